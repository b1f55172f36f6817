"""Optimizers over a list of parameters, in order of increasing complexity: SGD, Adam, AdamW.

An optimizer knows nothing about the model: it gets the list of :class:`~numlp.layers.Parameter`
objects once, keeps all its state keyed by those objects, and updates ``param.value`` in place
from ``param.grad`` on each :meth:`Optimizer.step`. The base class validates the shared
hyperparameters, clips and decays; subclasses only say how one parameter moves (``_update``).
"""

from __future__ import annotations

import math

import numpy as np

from numlp import kernels
from numlp.layers import Parameter
from numlp.registry import Registry
from numlp.schedules import Schedule, SchedulePlan


def global_grad_norm(params: list[Parameter]) -> float:
    """The L2 norm of all gradients taken together, as if concatenated into one vector."""
    return math.sqrt(sum(float(np.vdot(p.grad, p.grad)) for p in params))


def clip_grad_norm(params: list[Parameter], max_norm: float, norm: float | None = None) -> float:
    """Scale all gradients by one factor so that their global norm is at most ``max_norm``.

    ``norm`` is the current global norm if the caller has it already. Returns the norm before
    clipping (useful to watch for exploding gradients).
    """
    if norm is None:
        norm = global_grad_norm(params)
    if norm > max_norm:
        scale = max_norm / (norm + 1e-12)
        for p in params:
            p.grad *= scale
    return norm


# Momentum takes about 150 steps (beta 0.9) to fall through float32's subnormal range, so
# clearing it every 8 steps removes all but a few percent of the subnormals a run would hold,
# at an eighth of the cost of clearing every step (4 integer passes over the parameters).
FLUSH_EVERY = 8

# The exponent bits of IEEE floats: all zero in zeros and subnormals, and only there.
_EXPONENT_BITS = {
    np.dtype(np.float32): (np.int32, np.int32(0x7F800000)),
    np.dtype(np.float64): (np.int64, np.int64(0x7FF0000000000000)),
}


def flush_subnormals(a: np.ndarray, scratch: np.ndarray) -> None:
    """Set the subnormal entries of ``a`` (below 1.2e-38 in float32) to zero, in place.

    Why: a momentum sum whose gradient stays zero (a border pixel, a unit that rarely fires)
    shrinks by ``beta1`` each step, down through the subnormal range before it reaches zero,
    and many x86 CPUs take a slow microcode assist on every multiply or add that touches a
    subnormal. On an Intel Xeon here, 23 % of a 2048x2048 layer's Adam moment was subnormal by
    epoch 42 and its epochs had slowed from 28 to 54 s; an Adam step on such a layer took 47 ms
    against 12 ms (``benchmarks/subnormals.py``). NumPy cannot switch on the CPU's flush-to-zero
    mode, so the optimizers clear their momentum every ``FLUSH_EVERY`` steps, with integer
    operations on the bits (which take no assist). What is zeroed is below 1.2e-38: the step it
    would have made is far below the last bit of any weight that is not itself that small.
    ``scratch``: an array of ``a``'s shape and item size, overwritten.
    """
    int_type, exponent = _EXPONENT_BITS.get(a.dtype, (None, None))
    if int_type is None or not a.flags.c_contiguous:
        return
    bits, keep = a.view(int_type), scratch.view(int_type)
    np.bitwise_and(bits, exponent, out=keep)  # 0 for zeros and subnormals
    np.minimum(keep, 1, out=keep)
    np.negative(keep, out=keep)  # all bits set where the number is normal, none where not
    bits &= keep


def _check_number(who: str, name: str, value, low: float, high: float = math.inf, low_open=False):
    ok = isinstance(value, (int, float, np.floating, np.integer)) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and value < high
    if not ok:
        bracket = "(" if low_open else "["
        raise ValueError(f"{who}: {name} must be in {bracket}{low}, {high}), got {value!r}")


class Optimizer:
    """Base optimizer.

    Parameters
    ----------
    params : list of Parameter
        What to update, usually ``model.parameters()``.
    lr : float
        Learning rate: the peak rate a ``schedule`` starts from, else the rate of every step.
        ``optimizer.lr`` is always the rate of the latest step.
    weight_decay : float
        L2 penalty ``weight_decay / 2 * sum(W**2)`` over parameters with ``decay=True``
        (weights, not biases); added to the gradient, and reported by :meth:`penalty` so that
        the loss ``fit`` reports is the loss actually minimised.
    clip_norm : float or None
        If set, gradients are scaled so that their global norm is at most this (0: off).
    schedule : Schedule or SchedulePlan, optional
        The learning rate of each step, asked before it (step 0, 1, ...). A
        :class:`~numlp.schedules.SchedulePlan` (``plan("cosine")``) is built from ``lr`` by
        :meth:`plan_schedule` once the run's length is known (``fit`` does it). The optimizer
        owns its rate: nothing else sets ``lr``.
    """

    decoupled_decay = False

    def __init__(
        self,
        params,
        lr: float,
        weight_decay: float = 0.0,
        clip_norm: float | None = None,
        schedule: Schedule | SchedulePlan | None = None,
    ):
        who = type(self).__name__
        self.params = list(params)
        if not self.params:
            raise ValueError(
                f"{who}: got an empty parameter list (did you pass model.parameters()?)"
            )
        for p in self.params:
            if not isinstance(p, Parameter):
                raise ValueError(f"{who}: expected Parameter objects, got {type(p).__name__}")
        if len({id(p) for p in self.params}) != len(self.params):
            raise ValueError(f"{who}: the same parameter appears twice in the list")
        _check_number(who, "lr", lr, 0.0, low_open=True)
        _check_number(who, "weight_decay", weight_decay, 0.0)
        if clip_norm is not None:
            _check_number(who, "clip_norm", clip_norm, 0.0)
        if not (schedule is None or callable(schedule) or isinstance(schedule, SchedulePlan)):
            raise ValueError(f"{who}: schedule must be a Schedule, a plan or a function of the "
                             f"step, got {type(schedule).__name__}")  # fmt: skip
        self.base_lr = self.lr = float(lr)
        self.schedule = schedule
        self.weight_decay = float(weight_decay)
        self.clip_norm = clip_norm or None
        self.steps = 0
        self.state: dict[Parameter, dict[str, np.ndarray]] = {p: {} for p in self.params}
        # One work array per parameter, reused every step: large temporaries are allocated
        # and page-faulted anew on every step otherwise, which costs as much as the update.
        self._scratch: dict[Parameter, np.ndarray] = {}
        # A fused kernel stands in for _update only where the class that wrote _update wrote
        # it too: a subclass with an _update of its own keeps it.
        writer = next(c for c in type(self).__mro__ if "_update" in c.__dict__)
        self._fusing = "_fused_update" in writer.__dict__

    def plan_schedule(self, epochs: int, steps_per_epoch: int) -> None:
        """Turn a :class:`~numlp.schedules.SchedulePlan` into the schedule of a run of
        ``epochs`` of ``steps_per_epoch`` steps, peaking at ``lr``; other schedules stay."""
        if isinstance(self.schedule, SchedulePlan):
            self.schedule = self.schedule.build(epochs, steps_per_epoch, self.base_lr)

    def step(self, grad_norm: float | None = None) -> float | None:
        """Apply one update from the current gradients, at the rate the schedule gives for
        this step. ``grad_norm``, if the caller computed it, spares clipping a second pass.
        Returns the pre-clip norm if clipping is on."""
        if self.schedule is not None:
            if isinstance(self.schedule, SchedulePlan):
                raise ValueError("the schedule plan has no length yet: call plan_schedule first")
            self.lr = self.schedule(self.steps)
        norm = clip_grad_norm(self.params, self.clip_norm, grad_norm) if self.clip_norm else None
        self.steps += 1
        fused = kernels.fused() if self._fusing else None
        for p in self.params:
            if fused is not None and kernels.takes(p.value, p.grad, *self.state[p].values()):
                self._fused_update(fused, p, self.state[p])
                continue
            grad = p.grad
            scratch = self._scratch.get(p)
            if scratch is None or scratch.dtype != p.value.dtype:
                scratch = self._scratch[p] = np.empty_like(p.value)
            coupled, keep = self._decays(p)
            if keep != 1:
                p.value *= keep
            if coupled:
                # p.grad is scratch once the step has begun: backward overwrites it next time.
                np.multiply(p.value, coupled, out=scratch)
                grad += scratch
            self._update(p, grad, self.state[p], scratch)
        return norm

    def _update(self, p: Parameter, grad: np.ndarray, state: dict, scratch: np.ndarray) -> None:
        """Move ``p.value`` using ``grad``; ``state`` is this parameter's own, ``scratch`` an
        array of its shape to use for temporaries."""
        raise NotImplementedError

    def _fused_update(self, fused, p: Parameter, state: dict) -> None:
        """The weight decay of :meth:`step` and :meth:`_update` in one pass, with
        :mod:`numlp.kernels` (``fused``): the same arithmetic, the same bits. Optional: an
        optimizer of your own without it takes the NumPy path."""
        raise NotImplementedError

    def _decays(self, p: Parameter) -> tuple[float, float]:
        """``(coupled, keep)``: the L2 factor added to the gradient and the factor that
        multiplies the weights first (``1 - lr * weight_decay`` when decoupled), for ``p``."""
        if not (self.weight_decay and p.decay):
            return 0.0, 1.0
        if self.decoupled_decay:
            return 0.0, 1 - self.lr * self.weight_decay
        return self.weight_decay, 1.0

    def penalty(self) -> float:
        """The weight-decay term this optimizer adds to the loss it minimises."""
        if not self.weight_decay or self.decoupled_decay:
            return 0.0
        squares = sum(float(np.vdot(p.value, p.value)) for p in self.params if p.decay)
        return 0.5 * self.weight_decay * squares

    def config(self) -> dict:
        return {"lr": self.lr, "weight_decay": self.weight_decay, "clip_norm": self.clip_norm}

    def state_dict(self) -> dict[str, np.ndarray]:
        """All state as arrays keyed ``"{index}.{name}"`` (index into ``params``) and ``steps``."""
        out = {"steps": np.array(self.steps), "lr": np.array(self.lr)}
        for i, p in enumerate(self.params):
            for name, arr in self.state[p].items():
                out[f"{i}.{name}"] = arr
        return out

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.steps = int(state["steps"])
        self.lr = float(state["lr"])
        for key, arr in state.items():
            if key in ("steps", "lr"):
                continue
            index, _, name = key.partition(".")
            if not index.isdigit() or int(index) >= len(self.params):
                raise ValueError(f"optimizer state key {key!r} names no parameter")
            p = self.params[int(index)]
            if arr.shape != p.value.shape:
                raise ValueError(
                    f"optimizer state {key!r} has shape {arr.shape}, parameter has {p.value.shape}"
                )
            self.state[p][name] = arr.astype(p.value.dtype)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Stochastic gradient descent, with optional (Nesterov) momentum, as PyTorch defines it:

    ``v = momentum * v + g``; the step is ``lr * v``, or ``lr * (g + momentum * v)`` with Nesterov.
    """

    def __init__(
        self, params, lr=0.01, momentum=0.0, nesterov=False, weight_decay=0.0, clip_norm=None,
        schedule=None,
    ):  # fmt: skip
        super().__init__(params, lr, weight_decay, clip_norm, schedule)
        _check_number("SGD", "momentum", momentum, 0.0, 1.0)
        if nesterov and momentum == 0:
            raise ValueError("SGD: nesterov=True needs momentum > 0")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)

    def _update(self, p, grad, state, scratch):
        if self.momentum:
            v = state.get("velocity")
            if v is None:
                v = state["velocity"] = grad.copy()
            else:
                v *= self.momentum
                v += grad
                if self.steps % FLUSH_EVERY == 0:
                    flush_subnormals(v, scratch)
            if self.nesterov:
                np.multiply(v, self.momentum, out=scratch)
                grad += scratch
            else:
                grad = v
        np.multiply(grad, self.lr, out=scratch)
        p.value -= scratch

    def _fused_update(self, fused, p, state):
        velocity = p.grad  # a stand-in the kernel never reads without momentum
        if self.momentum:
            velocity = state.get("velocity")
            if velocity is None:  # zeros, not a copy of the gradient: 0 * momentum + g is g
                velocity = state["velocity"] = np.zeros_like(p.value)
        fused.sgd_update(
            p.value.reshape(-1), p.grad.reshape(-1), velocity.reshape(-1), self.lr,
            self.momentum, self._decays(p)[0], self.nesterov, self.steps % FLUSH_EVERY == 0,
        )  # fmt: skip

    def config(self):
        return {**super().config(), "momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with bias-corrected first and second moment estimates.

    ``m = beta1 m + (1 - beta1) g``, ``v = beta2 v + (1 - beta2) g**2``, and the step is
    ``lr * m_hat / (sqrt(v_hat) + eps)``. ``weight_decay`` here is the classic L2 term added to
    the gradient; for decay decoupled from the adaptive scaling use :class:`AdamW`.
    """

    def __init__(
        self, params, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, clip_norm=None,
        schedule=None,
    ):  # fmt: skip
        super().__init__(params, lr, weight_decay, clip_norm, schedule)
        who = type(self).__name__
        _check_number(who, "beta1", beta1, 0.0, 1.0)
        _check_number(who, "beta2", beta2, 0.0, 1.0)
        _check_number(who, "eps", eps, 0.0, low_open=True)
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)

    # The moments are kept as running sums without their (1 - beta) factors, M = m / (1 - beta1)
    # and V = v / (1 - beta2): each then updates in place with one multiply and one add
    # (M = beta1 M + g), and the factors join the scalars of the step. That is 10 passes over
    # the parameters per step instead of 13: 0.62 ms instead of 0.80 ms for the default
    # 784-512-256-10 model, measured side by side. Checkpoints store M and V as they are (a
    # conversion would cost bit-identical resume); textbook m and v load too.

    def _update(self, p, grad, state, scratch):
        if not state:
            state["m_sum"] = np.zeros_like(p.value)
            state["v_sum"] = np.zeros_like(p.value)
        m_sum, v_sum, s = state["m_sum"], state["v_sum"], scratch
        m_sum *= self.beta1
        m_sum += grad
        if self.steps % FLUSH_EVERY == 0:
            flush_subnormals(m_sum, s)
        v_sum *= self.beta2
        np.multiply(grad, grad, out=s)
        v_sum += s
        eps_c, factor = self._step_scalars()
        np.sqrt(v_sum, out=s)
        s += eps_c
        np.divide(m_sum, s, out=s)
        s *= factor
        p.value -= s

    def _step_scalars(self) -> tuple[float, float]:
        """``(eps / c, lr (1 - beta1) / (bias1 c))``: the step is ``factor * M / (sqrt(V) +
        eps / c)``, because m_hat / (sqrt(v_hat) + eps) = M (1 - beta1) / bias1 / (c sqrt(V)
        + eps) with c = sqrt((1 - beta2) / bias2), and c sqrt(V) + eps = c (sqrt(V) + eps / c)."""
        t = self.steps
        bias1 = 1 - self.beta1**t
        c = math.sqrt((1 - self.beta2) / (1 - self.beta2**t))
        return self.eps / c, self.lr * (1 - self.beta1) / (bias1 * c)

    def _fused_update(self, fused, p, state):
        if not state:
            state["m_sum"] = np.zeros_like(p.value)
            state["v_sum"] = np.zeros_like(p.value)
        flat = [a.reshape(-1) for a in (p.value, p.grad, state["m_sum"], state["v_sum"])]
        fused.adam_update(
            *flat, self.beta1, self.beta2, *self._step_scalars(), *self._decays(p),
            self.steps % FLUSH_EVERY == 0,
        )  # fmt: skip

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        super().load_state_dict(state)
        for p in self.params:  # textbook moments (other optimizers' files) become running sums
            moments = self.state[p]
            if "m" in moments:
                moments["m_sum"] = moments.pop("m") / np.asarray(1 - self.beta1, p.value.dtype)
            if "v" in moments:
                moments["v_sum"] = moments.pop("v") / np.asarray(1 - self.beta2, p.value.dtype)

    def config(self):
        return {**super().config(), "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019): before each Adam step,
    ``W *= 1 - lr * weight_decay``. The decay is not the gradient of a loss term, so
    :meth:`penalty` is zero."""

    decoupled_decay = True

    def __init__(
        self, params, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01, clip_norm=None,
        schedule=None,
    ):  # fmt: skip
        super().__init__(params, lr, beta1, beta2, eps, weight_decay, clip_norm, schedule)


def sgd(params, lr=0.01, momentum=0.0, weight_decay=0.0, clip_norm=None, schedule=None,
        nesterov=None) -> SGD:  # fmt: skip
    """SGD as a run builds it by name: Nesterov momentum whenever there is momentum."""
    nesterov = momentum > 0 if nesterov is None else nesterov
    return SGD(params, lr, momentum, nesterov, weight_decay, clip_norm, schedule)


# The optimizers a config names, with the run settings each takes. One of your own joins with
# OPTIMIZERS.register("name", factory, settings=("lr", ...)); its factory takes the parameter
# list first, those settings and ``schedule`` as keywords.
OPTIMIZERS = Registry("optimizer")
_SHARED = ("lr", "weight_decay", "clip_norm")
OPTIMIZERS.register("sgd", sgd, settings=(*_SHARED, "momentum"))
OPTIMIZERS.register("adam", Adam, settings=_SHARED)
OPTIMIZERS.register("adamw", AdamW, settings=_SHARED)


def make_optimizer(name: str, params, **kwargs) -> Optimizer:
    """Build a registered optimizer by name (``sgd``, ``adam``, ``adamw``...)."""
    return OPTIMIZERS[name](params, **kwargs)
