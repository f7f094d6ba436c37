// rover console: both eyes, HUD, joystick (held = deadman), gamepad, e-stop. The robot decides:
// this page only asks; a closed or silent page is a stale input there.
"use strict";
const $ = (id) => document.getElementById(id);
const token = new URLSearchParams(location.search).get("token");
const wsUrl = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws" +
  (token ? "?token=" + encodeURIComponent(token) : "");
const SEND_MS = 33;
const input = { steering: 0, throttle: 0, deadman: false, autopilot: false, record: false };
// what `rover bench console` reads: capture -> shown (wall clock, same machine on loopback)
const rover = (window.rover = { pingMs: (window.rover || {}).pingMs, framesShown: 0, lastFrameSeq: -1, hud: null, connected: false,
  latencies: [], rtts: [] });
const keep = (list, x) => { list.push(x); if (list.length > 5000) list.shift(); };
let ws = null, lastHeard = 0, overlayOn = true, padHeld = false, padPrev = [];
const wallMs = () => performance.timeOrigin + performance.now();

function send(obj) { if (ws && ws.readyState === 1) ws.send(JSON.stringify(obj)); }
function sendInput() { send({ type: "input", ...input, wall_ms: wallMs() }); }

function connect() {
  ws = new WebSocket(wsUrl);
  ws.binaryType = "arraybuffer";
  ws.onopen = () => { rover.connected = true; lastHeard = performance.now(); };
  ws.onmessage = (ev) => {
    lastHeard = performance.now();
    if (typeof ev.data === "string") showHud(JSON.parse(ev.data)); else showFrame(ev.data);
  };
  ws.onclose = () => {
    rover.connected = false;
    // after a reconnect nothing moves until the operator acts again (the robot insists too)
    Object.assign(input, { steering: 0, throttle: 0, deadman: false, autopilot: false });
    setTimeout(connect, 500);
  };
}

async function drawJpeg(canvas, bytes, alpha) {
  const bitmap = await createImageBitmap(new Blob([bytes], { type: "image/jpeg" }));
  const ctx = canvas.getContext("2d");
  if (canvas.width !== bitmap.width && alpha === 1) { canvas.width = bitmap.width; canvas.height = bitmap.height; }
  ctx.globalAlpha = alpha;
  ctx.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  ctx.globalAlpha = 1;
  bitmap.close();
}

async function showFrame(buf) {
  const view = new DataView(buf);
  const headerLen = view.getUint32(4, true);
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 8, headerLen)));
  let offset = 8 + headerLen;
  const parts = header.sizes.map((n) => { const p = new Uint8Array(buf, offset, n); offset += n; return p; });
  await Promise.all([drawJpeg($("left"), parts[0], 1), drawJpeg($("right"), parts[1], 1)]);
  if (overlayOn && parts[2].length) await drawJpeg($("left"), parts[2], 0.35);
  const shown = wallMs();
  rover.framesShown += 1;
  rover.lastFrameSeq = header.seq;
  keep(rover.latencies, shown - header.capture_wall_ms);
  $("imgage").textContent = (shown - header.capture_wall_ms).toFixed(0) + " ms";
  send({ type: "shown", seq: header.seq, capture_wall_ms: header.capture_wall_ms, shown_wall_ms: shown });
}

function pill(el, text, cls) { el.textContent = text; el.className = "pill " + (cls || ""); }

function showHud(h) {
  if (h.type === "pong") {
    const rtt = wallMs() - h.wall_ms;
    keep(rover.rtts, rtt);
    $("rtt").textContent = rtt.toFixed(1) + " ms";
    return;
  }
  if (h.type !== "hud") return;
  rover.hud = h;
  document.body.classList.toggle("viewer", h.role !== "driver");
  pill($("mode"), h.autopilot ? "AUTOPILOT" : "MANUAL");
  const estop = h.estop || h.estop_latched;
  pill($("armed"), estop ? "E-STOP" : h.armed ? "armed" : "disarmed", estop ? "bad" : h.armed ? "good" : "");
  $("estop").className = h.estop_latched ? "latched" : "";
  pill($("role"), h.role === "driver" ? "you drive" : "view only" + (h.driver ? " (" + h.driver + " drives)" : ""),
    h.role === "driver" ? "good" : "");
  const hh = h.health || {};
  // what the recorder does (--record; the record key by the robot pauses it), not this page's button
  pill($("recording"), hh.recording ? (hh.recording_paused ? "PAUSED" : "REC") : "REC off",
    hh.recording && !hh.recording_paused ? "rec" : "");
  $("steering").textContent = fmt(h.cmd_steering) + (h.stale ? " (stale)" : "");
  $("throttle").textContent = fmt(h.cmd_throttle);
  $("speed").textContent = "steer " + fmt(h.motor_steering) + " thr " + fmt(h.motor_throttle);
  $("source").textContent = h.source || "-";
  $("latency").textContent = hh.glass_to_motor_ms ? hh.glass_to_motor_ms.toFixed(1) + " ms" : "- (no frame-driven command)";
  $("disk").textContent = hh.free_disk_mb != null ? (hh.free_disk_mb / 1000).toFixed(1) + " GB" : "-";
  $("rates").textContent = hh.camera_hz != null ?
    `camera ${hh.camera_hz} Hz (${hh.camera_drops} dropped) · steering ${hh.steering_hz} · traversability ${hh.traversability_hz} · control ${hh.control_hz} · motor ${hh.motor_hz} Hz · operators ${hh.operators}` : "-";
  $("modebtn").className = input.autopilot ? "on" : "";
  $("recbtn").className = input.record ? "on" : "";
  $("recbtn").textContent = input.record ? "resume recording" : "pause recording";
}

const fmt = (x) => (x == null ? "-" : (x >= 0 ? "+" : "") + Number(x).toFixed(2));

function setupJoystick() {
  const pad = $("joystick"), knob = $("knob");
  const place = (x, y) => { knob.style.left = 60 + x * 60 + "px"; knob.style.top = 60 - y * 60 + "px"; };
  const move = (ev) => {
    const r = pad.getBoundingClientRect(), radius = r.width / 2;
    const x = Math.max(-1, Math.min(1, (ev.clientX - r.left - radius) / radius));
    const y = Math.max(-1, Math.min(1, -(ev.clientY - r.top - radius) / radius));
    input.steering = x; input.throttle = y; place(x, y); sendInput();
  };
  pad.addEventListener("pointerdown", (ev) => {
    pad.setPointerCapture(ev.pointerId); pad.classList.add("held");
    input.deadman = true; move(ev);
  });
  pad.addEventListener("pointermove", (ev) => { if (input.deadman && !padHeld) move(ev); });
  const up = () => {
    pad.classList.remove("held");
    Object.assign(input, { deadman: false, steering: 0, throttle: 0 }); place(0, 0); sendInput();
  };
  pad.addEventListener("pointerup", up);
  pad.addEventListener("pointercancel", up);
}

function pollGamepad() {
  const gp = [...(navigator.getGamepads ? navigator.getGamepads() : [])].find((g) => g && g.connected);
  if (!gp) { $("pad").textContent = "no gamepad"; return; }
  $("pad").textContent = "gamepad: " + gp.id.slice(0, 24);
  const b = (i) => !!(gp.buttons[i] && gp.buttons[i].pressed);
  const edge = (i) => b(i) && !padPrev[i];
  if (edge(1)) estop();
  if (edge(3)) toggleMode();
  if (edge(9)) toggleRecord();
  const held = b(5);  // RB / R1 held is the deadman, as on the robot's own gamepad
  if (held || padHeld) {
    input.deadman = held;
    input.steering = held ? gp.axes[0] || 0 : 0;
    input.throttle = held ? (gp.buttons[7] ? gp.buttons[7].value : 0) : 0;
  }
  padHeld = held;
  padPrev = gp.buttons.map((x) => x.pressed);
}

function estop() { send({ type: "estop", wall_ms: wallMs() }); }
function toggleMode() { input.autopilot = !input.autopilot; sendInput(); }
function toggleRecord() { input.record = !input.record; sendInput(); }

$("estop").addEventListener("pointerdown", estop);
$("rearm").addEventListener("click", () => send({ type: "rearm" }));
$("modebtn").addEventListener("click", toggleMode);
$("recbtn").addEventListener("click", toggleRecord);
$("releasebtn").addEventListener("click", () => send({ type: "release" }));
$("overlaybtn").addEventListener("click", (ev) => { overlayOn = !overlayOn; ev.target.className = overlayOn ? "on" : ""; });
setupJoystick();
setInterval(() => {
  pollGamepad();
  sendInput();
  const lost = !rover.connected || performance.now() - lastHeard > 1000;
  pill($("link"), lost ? "link lost" : "link ok", lost ? "lost" : "good");
}, SEND_MS);
setInterval(() => send({ type: "ping", wall_ms: wallMs() }), rover.pingMs || 1000);
connect();
