"""The simulator's safety operator: the expert takes the wheel from a model, as a person would.

HG-DAgger (Kelly et al. 2019) learns from the moments a human takes over from the autopilot.
On the robot a person does that with the gamepad; in the simulator this operator does it,
through the same path: ``rover drive --sim S --model M --takeover expert[,CLEARANCE_M[,SECONDS]]``.
The model drives; the expert watches every frame (it sees the true obstacles, as the person
beside the robot sees the scene) and takes the wheel for ``hold_s`` seconds when its own plan's
clearance drops below ``clearance_m`` or after a collision, then hands back. The simulator node
publishes each answer on teleop/command: autopilot off with the deadman held and the expert's
command while it drives, autopilot on otherwise. The control node's source then switches to
"teleop", the recorder marks the span on /rover/takeover and training labels its frames with
the command the expert gave: the frames a human's take-over would give.

The rule is the in-process corrections' (``perception.steering.demos.corrected_samples``), so
the fast path and the recorded path take over in the same places. Plain logic: no bus.
"""

from __future__ import annotations

from dataclasses import dataclass

from rover.errors import ConfigError
from sim.expert import Expert
from sim.simulation import Observation

OPERATORS = ("expert",)


@dataclass(frozen=True)
class TakeoverConfig:
    """When the simulated operator takes the wheel, and for how long."""

    clearance_m: float = 0.35  # the expert's planned clearance below this: take over
    hold_s: float = 1.0  # then drive this long (from the last trouble) before handing back

    def __post_init__(self) -> None:
        if not 0 < self.clearance_m <= 5 or not 0 < self.hold_s <= 30:
            raise ConfigError(
                f"--takeover clearance {self.clearance_m:g} m, {self.hold_s:g} s: give a "
                "clearance in (0, 5] metres and (0, 30] seconds, e.g. expert,0.35,1"
            )


def parse_takeover(text: str) -> TakeoverConfig:
    """``expert[,CLEARANCE_M[,SECONDS]]`` -> TakeoverConfig; ConfigError naming the fix."""
    who, *rest = (part.strip() for part in text.split(","))
    if who not in OPERATORS or len(rest) > 2:
        raise ConfigError(
            f"--takeover {text!r}: give expert[,CLEARANCE_M[,SECONDS]], e.g. expert,0.35,1"
        )
    defaults = TakeoverConfig()
    try:
        values = [float(v) for v in rest]
    except ValueError:
        raise ConfigError(
            f"--takeover {text!r}: CLEARANCE_M and SECONDS are numbers, e.g. expert,0.35,1"
        ) from None
    values += [defaults.clearance_m, defaults.hold_s][len(values) :]
    return TakeoverConfig(clearance_m=values[0], hold_s=values[1])


@dataclass(frozen=True)
class OperatorAnswer:
    """What the operator does on one frame: drive (with this command) or leave it to the model."""

    driving: bool
    steering: float = 0.0
    throttle: float = 0.0


class TakeoverOperator:
    """The expert as a safety operator; ``answer`` is called with every frame's observation."""

    def __init__(self, config: TakeoverConfig | None = None) -> None:
        self.config = config or TakeoverConfig()
        self.expert = Expert()
        self.until_s = -1.0  # driving until this simulated time
        self.driven_steps = 0  # frames it drove (all episodes of this operator)
        self._last: tuple[int, OperatorAnswer] | None = None

    def answer(self, observation: Observation) -> OperatorAnswer:
        """This step's answer. The expert plans once per step (its command eases on every
        call), so a frame re-sent during warm-up gets the same answer."""
        state = observation.state
        if self._last is not None and self._last[0] == state.step:
            return self._last[1]
        steering, throttle = self.expert.act(observation)
        plan = self.expert.plan
        if state.collided or (plan is not None and plan.clearance_m < self.config.clearance_m):
            self.until_s = state.time_s + self.config.hold_s
        driving = state.time_s < self.until_s
        answer = OperatorAnswer(driving, steering, throttle) if driving else OperatorAnswer(False)
        self.driven_steps += driving
        self._last = (state.step, answer)
        return answer

    def next_episode(self) -> None:
        """A new world: the expert forgets its manoeuvre, the operator its hold."""
        self.expert.reset()
        self.until_s, self._last = -1.0, None
