"""Simulator node: stands in for the cameras and the motor controller.

It publishes camera/stereo exactly as the camera node does, serves the firmware emulator on a
pty (the control node opens it as its serial port), and moves the vehicle from the outputs the
emulator applies. With `--mcu avr` the compiled firmware runs in simavr instead, and the outputs
are read back from its servo/ESC pulses. With a simulator policy (expert, straight, random) it
also publishes the privileged driver's answer to each frame on perception/steering, as a
steering model would. Its configuration is one ``rover.runspec.SimSpec`` (`--spec JSON`), which
the stack fills from `rover drive --sim`'s flags.

Lock-step: publish frame N, wait until the control command that answers frame N
arrived and the emulator applied its DRIVE, then step. A run is then deterministic and as fast as
the stack. Without it the simulator runs in real time at the camera rate, for people.
"""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from drivers.avr_sim import AvrConfig, AvrMcu
from drivers.emulator import EmulatorConfig, PtyEmulator
from rover import bus, topics
from rover import messages as m
from rover.node import RateKeeper, Shutdown, node_argparser, node_config, run_main
from rover.ready import all_ready
from rover.runspec import SimSpec
from rover.teleop import TeleopConfig
from sim.episodes import WorldSequence
from sim.expert import Expert
from sim.policies import make_policy
from sim.scenario import load_scenario
from sim.simulation import Simulation
from sim.takeover import TakeoverOperator, parse_takeover

WARMUP_REPUBLISH_S = 0.1  # slow joiner: re-send the first frame until the stack answers
STARTUP_TIMEOUT_S = 60.0


@dataclass
class LockstepStats:
    """How the stack kept up: frames answered late (timeout) and the answer times."""

    late_frames: int = 0
    answer_ms: list[float] | None = None


class SimNode:
    """Wires a Simulation to the bus and the emulated motor controller."""

    def __init__(self, spec: SimSpec, bus_cfg: topics.BusConfig, teleop: TeleopConfig):
        self.spec = spec
        self.bus_cfg = bus_cfg
        self.worlds = world_sequence(spec)
        self.episode, self.episodes = 0, []  # finished episodes' metrics
        self.elapsed_s, self.steps_done = 0.0, 0  # in finished episodes
        self.sim = self._simulation(0)
        self.period_ns = int(self.sim.dt_s * 1e9)
        self.faults = random.Random(self.sim.world.seed)  # injected faults, reproducible
        self.dropped_frames = 0  # by --frame-drop
        link = topics.motor_port_for_sim(bus_cfg.namespace)
        if spec.mcu == "avr":  # the compiled firmware in simavr: outputs read from its pins
            self.emulator: PtyEmulator | AvrMcu = AvrMcu(AvrConfig(build=False), link_path=link)
        else:
            self.emulator = PtyEmulator(
                EmulatorConfig(loss_prob=spec.serial_loss, loss_seed=self.sim.world.seed),
                link_path=link,
            )
        self.frames = bus.Publisher(topics.CAMERA_STEREO, bus_cfg)
        self.truth = bus.Publisher(topics.SIM_TRUTH, bus_cfg)
        self.policy = make_policy(spec.policy, self.sim.world.seed) if spec.policy else None
        self._answer: tuple[int, tuple[float, float]] | None = None  # (step, policy's answer)
        self.estimates = bus.Publisher(topics.PERCEPTION_STEERING, bus_cfg) if self.policy else None
        self.commands = bus.Subscriber(topics.CONTROL_COMMAND, bus_cfg, newest=False, hwm=1000)
        takeover = spec.takeover  # --takeover: the expert as safety operator
        self.operator = TakeoverOperator(parse_takeover(takeover)) if takeover else None
        self.operator_pub = bus.Publisher(topics.TELEOP_COMMAND, bus_cfg) if takeover else None
        show = not spec.headless or spec.snapshot
        self.window = SimView(self.sim, spec, bus_cfg, teleop) if show else None
        self.stats = LockstepStats(answer_ms=[])
        self.clock_ns = time.monotonic_ns()  # lock-step: virtual capture time
        self.started = False
        self._answers = 1  # lock-step: commands answering a frame (sim.takeover: 2 in one)
        self._applied = None  # lock-step: the outputs the frame's answer set on the motors

    def publish_frame(self) -> m.StereoImage | None:
        """Render and publish the current view, its ground truth and the policy's answer;
        None when an injected fault dropped the frame (a seq gap, as a real camera makes)."""
        left, right, _ = self.sim.render()
        stamp = self.clock_ns if self.spec.lockstep else time.monotonic_ns()
        self._last_images = (left, right)
        if self.started and self.faults.random() < self.spec.frame_drop:
            self.frames.seq += 1
            self.dropped_frames += 1
            return None
        if self.spec.camera_latency_ms > 0:
            time.sleep(self.spec.camera_latency_ms / 1000)  # the injected transport delay
        if self.operator is not None:  # before the frame: control has it when the frame's due
            said = self.operator_pub.publish(self._operator_command(stamp))
            self._answers = 1 if said.autopilot else 2  # the operator's, then the CNN's repeat
        frame = self.frames.publish(
            m.StereoImage(
                stamp_ns=stamp, left=left, right=right, left_stamp_ns=stamp, right_stamp_ns=stamp
            )
        )
        s = self.sim.state
        self.truth.publish(
            m.SimTruth(
                frame_seq=frame.seq,
                stamp_ns=stamp,
                x_m=s.x_m,
                y_m=s.y_m,
                yaw_rad=s.yaw_rad,
                speed_mps=s.speed_mps,
                sim_time_s=s.time_s,
                collisions=s.collisions,
                distance_m=s.distance_m,
            )
        )
        if self.policy is not None:
            steering, throttle = self._policy_answer()
            self.estimates.publish(
                m.SteeringEstimate(
                    frame_seq=frame.seq,
                    stamp_ns=stamp,
                    steering=steering,
                    throttle=throttle,
                    source=self.spec.policy,
                )
            )
        return frame

    def _operator_command(self, stamp_ns: int) -> m.TeleopCommand:
        """The safety operator's answer to the frame about to go out (sim.takeover)."""
        said = self.operator.answer(self.sim.observation())
        return m.TeleopCommand(
            stamp_ns=stamp_ns,
            frame_seq=self.frames.seq,
            steering=said.steering,
            throttle=said.throttle,
            autopilot=not said.driving,
            deadman=said.driving,
            operator="simulator expert",
        )

    def _simulation(self, episode: int) -> Simulation:
        scenario, seed = self.worlds.world(episode)
        safety = self.spec.safety_driver_s
        driver = Expert() if safety > 0 else None  # the privileged driver takes over
        return Simulation(scenario, seed, safety_driver_s=safety, safety_driver=driver)

    def _policy_answer(self) -> tuple[float, float]:
        """The policy acts once per step: a frame re-sent during warm-up gets the same answer
        (the expert eases its command on every call, so a second call would move it)."""
        step = self.sim.state.step
        if self._answer is None or self._answer[0] != step:
            self._answer = (step, self.policy.act(self.sim.observation()))
        return self._answer[1]

    def next_world(self) -> None:
        """The episode is over but the run is not: go on with the scenario's next world."""
        self.episodes.append(self._episode_metrics())
        self.elapsed_s += self.sim.state.time_s
        self.steps_done += self.sim.state.step
        self.episode += 1
        self.sim = self._simulation(self.episode)
        self._answer = None
        if self.spec.policy:
            self.policy = make_policy(self.spec.policy, self.sim.world.seed)
        if self.operator is not None:
            self.operator.next_episode()
        if self.window is not None:
            self.window.show(self.sim)

    def _episode_metrics(self) -> dict:
        return dict(self.sim.metrics(), scenario=self.sim.scenario.name, seed=self.sim.world.seed)

    def warm_up(self, stop: Shutdown | None = None) -> None:
        """Slow joiner: re-send the first frame until the nodes we wait for hear the bus, and
        (lock-step) until the stack answers; only then does simulated time start."""
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        waiting = list(self.spec.wait_ready)
        answered = not self.spec.lockstep
        while not (answered and all_ready(self.bus_cfg, waiting)):
            if stop is not None and stop.requested:
                return  # Ctrl-C while the stack starts: stop now, not after a SIGKILL
            frame = self.publish_frame()  # never dropped: faults start with the run
            until = time.monotonic() + WARMUP_REPUBLISH_S
            while not answered and (left := until - time.monotonic()) > 0:
                cmd = self.commands.receive(timeout_ms=left * 1000)
                answered = cmd is not None and cmd.frame_seq == frame.seq
            if answered and not all_ready(self.bus_cfg, waiting):
                time.sleep(WARMUP_REPUBLISH_S)  # re-send pacing while others connect
            if time.monotonic() > deadline:
                missing = [n for n in waiting if not all_ready(self.bus_cfg, [n])]
                raise TimeoutError(
                    f"the stack never became ready (waiting for {missing or 'the control node'})"
                )
        self.commands.drain()
        self.started = True

    def wait_answer(self, frame: m.StereoImage) -> None:
        """Lock-step: block until the command answering `frame` reached the motors; a frame
        not answered in ``lockstep_timeout_s`` is counted late (metrics' ``late_frames``)."""
        sent_ns = time.monotonic_ns()
        deadline = time.monotonic() + self.spec.lockstep_timeout_s
        answers = self._answers  # in a take-over the CNN still answers: it keeps pace
        while True:
            left_ms = (deadline - time.monotonic()) * 1000
            cmd = self.commands.receive(timeout_ms=max(0.0, left_ms))
            answers -= cmd is not None and cmd.frame_seq == frame.seq
            if answers == 0:
                break
            if left_ms <= 0:
                self.stats.late_frames += 1
                return
        try:
            reached = self.emulator.wait_outputs(
                lambda o: ((o.seq - cmd.drive_seq) & 0xFFFF) < 0x8000,
                timeout_s=self.spec.lockstep_timeout_s,
            )
            # the answer's outputs: a stall here can let control's silence stop follow it
            self._applied = self.emulator.applied(cmd.drive_seq) or reached
        except TimeoutError:
            self.stats.late_frames += 1
            return
        self.stats.answer_ms.append((time.monotonic_ns() - sent_ns) / 1e6)

    def step(self) -> None:
        """One frame period on the outputs now; in lock-step on those the frame's answer set
        (a wall-clock watchdog trip since, on a loaded machine, is no simulated time)."""
        out = self._applied or self.emulator.outputs
        self._applied = None
        self.sim.step(out.steering, out.throttle)
        self.clock_ns += self.period_ns

    def run(self, stop: Shutdown) -> dict:
        duration = self.spec.duration_s
        self.warm_up(stop)
        rate = RateKeeper(1.0 / self.sim.dt_s)
        t0 = time.monotonic()
        while not stop.requested:
            if duration is not None and self.elapsed_s + self.sim.state.time_s >= duration - 1e-9:
                break
            if self.sim.done:
                if duration is None:
                    break  # no duration: one episode, until the goal or the time limit
                self.next_world()
                continue
            frame = self.publish_frame()
            if self.spec.lockstep and frame is not None:
                self.wait_answer(frame)
            if self.window is not None and not self._draw_window():
                break
            if not self.spec.lockstep:
                rate.keep_time()
            self.step()
        wall_s = time.monotonic() - t0
        return self._summary(wall_s)

    def _draw_window(self) -> bool:
        return self.window.update(self._last_images, self.emulator.outputs, self.stats)

    def _summary(self, wall_s: float) -> dict:
        result = self._episode_metrics()
        s = self.sim.state
        result["final_pose"] = [round(s.x_m, 6), round(s.y_m, 6), round(s.yaw_rad, 6)]
        episodes = [*self.episodes, self._episode_metrics()]
        steps = self.steps_done + s.step
        if len(episodes) > 1:  # the whole run's figures; each world's under "episodes"
            result.update(_totals(episodes))
            result["episodes"] = episodes
        result["steps"] = steps
        result["wall_s"] = round(wall_s, 3)
        result["steps_per_s"] = round(steps / wall_s, 1) if wall_s else 0.0
        result["lockstep"] = bool(self.spec.lockstep)
        result["late_frames"] = self.stats.late_frames
        if self.operator is not None:
            result["operator_takeover_s"] = round(self.operator.driven_steps * self.sim.dt_s, 3)
        spec = self.spec
        delay_ms = 0.0 if spec.camera_latency_measured else spec.camera_latency_ms
        if spec.frame_drop or spec.serial_loss or delay_ms:
            result["injected"] = {  # what the fault flags did, for the run's summary
                "frame_drop": spec.frame_drop,
                "dropped_frames": self.dropped_frames,
                "serial_loss": spec.serial_loss,
                "garbled_chunks": getattr(self.emulator, "garbled_chunks", 0),
                "camera_latency_ms": delay_ms,
            }
        return result

    def close(self) -> None:
        self.emulator.stop()
        if self.window is not None:
            self.window.close()


class SimView:
    """The window (or its off-screen twin, for --snapshot) and the keyboard/gamepad teleop."""

    def __init__(
        self, sim: Simulation, spec: SimSpec, bus_cfg: topics.BusConfig, teleop: TeleopConfig
    ):
        from sim.window import SimWindow

        headless = spec.headless
        self.sim = sim
        self.window = SimWindow(sim.world, headless=headless)
        self.teleop = teleop.build()
        self.teleop.latches.autopilot = spec.mode == "drive"  # the human can take over
        self.autopilot_name = spec.policy or "autopilot"
        quiet = headless or spec.takeover  # --takeover: the operator's topic
        self.teleop_pub = None if quiet else bus.Publisher(topics.TELEOP_COMMAND, bus_cfg)
        # the traversability map, tinted on the left eye when that node runs
        self.trav = bus.Subscriber(topics.PERCEPTION_TRAVERSABILITY, bus_cfg)
        self.trav_geom = None
        self.recorder = bus.Subscriber(topics.RECORDER_STATUS, bus_cfg)  # the HUD's REC / PAUSED
        self.last_s = time.monotonic()
        self.wall_t0 = self.last_s

    def update(self, images, outputs, stats: LockstepStats) -> bool:
        """Draw one frame, publish the operator's command; False when the user closed it."""
        from sim.window import WindowView

        now = time.monotonic()
        events = self.window.events()
        self.recorder.receive()
        latest = self.recorder.last if self.recorder.alive() else None
        self.teleop.latches.follow_recorder(latest)
        state = self.teleop.update(events.events, events.pressed, now - self.last_s)
        self.last_s = now
        if self.teleop_pub is not None:
            self.teleop_pub.publish(state.command(0, time.monotonic_ns()))
        left = self._overlay(images[0])
        s, log = self.sim.state, self.sim.log
        wall = now - self.wall_t0
        self.window.draw(
            WindowView(
                pose=(s.x_m, s.y_m, s.yaw_rad),
                left=left,
                right=images[1],
                vehicle_length_m=self.sim.vehicle.length_m,
                vehicle_width_m=self.sim.vehicle.width_m,
                trail_xy=_trail(log),
                collisions_xy=_xy(log.collision_xy),
                speed_mps=s.speed_mps,
                steering=outputs.steering,
                throttle=outputs.throttle,
                autopilot=state.autopilot,
                source=self.autopilot_name if state.autopilot else state.device,
                estop=outputs.estop,
                recording=state.recording,
                distance_m=s.distance_m,
                sim_time_s=s.time_s,
                steps_per_s=s.step / wall if wall > 0 else None,
                late_frames=stats.late_frames,
            )
        )
        if events.snapshot:  # F12: say where it went, the user pressed a key, not a flag
            path = self.window.snapshot(f"rover-snapshot-{int(time.time())}.png")
            print(f"window snapshot: {path.resolve()}", flush=True)
        return not events.quit

    def _overlay(self, left: np.ndarray) -> np.ndarray:
        self.trav.receive()
        msg = self.trav.last
        if msg is None or self.trav.age_s() > 0.5:
            return left
        from perception.stereo import StereoGeometry
        from perception.traversability.overlay import draw_overlay
        from perception.traversability.polar import PolarSummary

        self.trav_geom = self.trav_geom or StereoGeometry.from_camera_model(self.sim.camera)
        polar = PolarSummary.from_arcs(msg.arcs)
        return draw_overlay(left, msg.cost, polar, self.trav_geom)

    def snapshot(self, path: str) -> None:
        self.window.snapshot(path)

    def show(self, sim: Simulation) -> None:
        """The next world of a long run: a fresh map."""
        from sim.window import SimWindow

        headless = self.window.headless
        self.window.close()
        self.sim, self.window = sim, SimWindow(sim.world, headless=headless)

    def close(self) -> None:
        self.recorder.close()
        self.window.close()


def world_sequence(spec: SimSpec) -> WorldSequence:
    """The worlds of this run: scenario ``a,b,c`` cycles families, episode 0 is the first
    one's world (the seed or its own), the next ones come from the training range."""
    families = tuple(name.strip() for name in spec.scenario.split(",") if name.strip())
    first = spec.seed if spec.seed is not None else load_scenario(families[0]).seed
    return WorldSequence(families, spec.seed or 0, spec.randomise_materials, first_seed=first)


def _totals(episodes: list[dict]) -> dict:
    """A run of several worlds as one: distances, collisions and time add up."""
    dist = sum(e["distance_m"] for e in episodes)
    hits = sum(e["collisions"] for e in episodes)
    elapsed = sum(e["elapsed_s"] for e in episodes)
    autonomy = sum(e["autonomy_pct"] * e["elapsed_s"] for e in episodes) / max(elapsed, 1e-9)
    return {
        "scenario": ",".join(dict.fromkeys(e["scenario"] for e in episodes)),
        "distance_m": round(dist, 4),
        "collisions": hits,
        "mean_distance_between_collisions_m": round(dist / max(1, hits), 4),
        "takeover_m": round(sum(e["takeover_m"] for e in episodes), 4),
        "autonomy_pct": round(autonomy, 3),
        "goals_reached": sum(bool(e["reached_goal"]) for e in episodes),
        "elapsed_s": round(elapsed, 4),
    }


def _trail(log, keep: int = 3000) -> np.ndarray:
    return np.column_stack([log.x_m[-keep:], log.y_m[-keep:]]) if log.x_m else _xy([])


def _xy(points) -> np.ndarray:
    return np.asarray(points, dtype=float).reshape(-1, 2)


def write_outputs(node: SimNode, summary: dict, spec: SimSpec) -> None:
    """Metrics JSON (atomically), trajectory PNG beside it, window snapshot."""
    if spec.metrics_out:
        path = Path(spec.metrics_out)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(summary, indent=2))
        os.replace(tmp, path)
        node.sim.write_trajectory_png(path.with_suffix(".png"))
    if spec.snapshot and node.window is not None:
        node.window.snapshot(spec.snapshot)


def main() -> None:
    parser = node_argparser(__doc__)
    parser.add_argument("--spec", required=True, type=SimSpec.from_json, help="the SimSpec as JSON")
    args = parser.parse_args()
    cfg, bus_cfg = node_config(args)
    stop = Shutdown()
    node = SimNode(args.spec, bus_cfg, cfg.teleop)
    node.emulator.start()
    try:
        summary = node.run(stop)
        write_outputs(node, summary, args.spec)
    finally:
        node.close()


if __name__ == "__main__":
    run_main("sim", main)
