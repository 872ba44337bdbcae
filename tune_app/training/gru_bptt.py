"""Backpropagation through time written out for the model's single-layer GRU, on the CPU.

Why: on the CPU, `nn.GRU`'s autograd records about a dozen small operations per time step
(48 encoder + 24 decoder steps per batch), and the backward pass spends most of its time in the
autograd engine, in per-step weight-gradient matrix products and in concatenating gate gradients.
Here each of the encoder and the decoder is one `torch.autograd.Function`: the forward pass is
the same arithmetic as PyTorch's GRU cell, in the same order (so its outputs are bit-for-bit
those of `nn.GRU` and `nn.Linear`), and the backward pass keeps the recurrence to four or five
operations per step and computes the weight gradients of all steps in one matrix product each.
The gradients equal autograd's up to float rounding (summation order); `tests/training/
test_gru_bptt.py` checks them against autograd in float64 (`torch.autograd.gradcheck`).

Bit-for-bit holds for the torch that pyproject.toml admits (2.13; ATen may reorder its cell in
another) under each of ATen's CPU vector widths (the tests rerun under narrower ones). First
derivatives only: a second (`create_graph=True`) raises, since the buffers the backward pass
reads are not in the graph.

The GRU (Cho et al., 2014, "Learning Phrase Representations using RNN Encoder-Decoder for
Statistical Machine Translation"), as `torch.nn.GRU` defines it (reset gate applied after the
hidden projection), for input x_t [B, I] and state h [B, H]:

    r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
    z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
    h' = (1 - z) * n + z * h      (computed as (h - n) * z + n, as ATen does)

Gradient of h' with respect to the pre-activations, given dh = dL/dh':

    dn_pre = dh * (1 - z) * (1 - n^2)          (input and hidden n-gate pre-activation)
    dr_pre = dn_pre * (W_hn h + b_hn) * r * (1 - r)
    dz_pre = dh * (h - n) * z * (1 - z)
    dL/dh  = dh * z + [dr_pre, dz_pre, dn_pre * r] @ W_hh

The per-step factors (everything but dh) are computed for all steps at once before the backward
recurrence, so the loop only multiplies dh in.

Against `torch.compile` (benchmarks/trainer_overhead.py, 2026-12-06, torch 2.13.0, one batch
forward and backward at hidden 32 / 64): a functional GRU cell compiled and looped over the
steps took 1.3-1.7x this pass's time (modes default and max-autotune-no-cudagraphs), so this
pass stays; the whole encoder-decoder compiled as one unrolled graph took 0.55-0.60x, after 2-5
minutes of compiling per process and per shape, and not bit-equal to nn.GRU.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch.autograd.function import once_differentiable

__all__ = ["decode", "encode"]


_SECOND_DERIVATIVE = (
    "the hand-written GRU backward pass (tune_app.training.gru_bptt) gives first derivatives "
    "only; a second one (create_graph=True: a gradient penalty, a Hessian-vector product) must "
    "go through torch's nn.GRU: call the modules themselves, or Seq2Seq with "
    "encoded=model.encode(x), which runs torch's modules"
)


def _first_order(backward: Callable[..., Any]) -> Callable[..., Any]:
    """`backward` under torch's `once_differentiable` (run without recording), raising at once
    under `create_graph=True`.

    once_differentiable alone is not enough: it marks the gradients it returns only where an
    incoming gradient requires grad (not for a loss linear in the output), and even when it does,
    `torch.autograd.grad(..., inputs=weights)` prunes its marker from the graph, so a second
    derivative would come out without this function's part (the buffers the backward pass reads
    are not in the graph) instead of raising."""
    once = once_differentiable(backward)

    @functools.wraps(backward)
    def wrapper(ctx: Any, *grads: Any) -> Any:
        if torch.is_grad_enabled():  # during a backward pass: only under create_graph=True
            raise RuntimeError(_SECOND_DERIVATIVE)
        return once(ctx, *grads)

    return wrapper


_ALIGN = 64  # bytes: torch's CPU allocator aligns every tensor it makes to 64


def _per_step(like: torch.Tensor, steps: int, batch: int, width: int) -> torch.Tensor:
    """An empty [steps, batch, width] buffer whose every step [batch, width] is contiguous and
    starts 64-byte aligned, as a tensor torch allocates on its own does. The BLAS behind
    `addmm` rounds differently on an input that is not (measured on an AVX-512 CPU: any start
    off a 16-byte boundary changes last bits), so a step packed right after the previous one
    (B * H * 4 bytes, e.g. 7 x 37 floats) would not match torch's GRU and head bit for bit."""
    size = batch * width
    per = max(1, _ALIGN // like.element_size())
    stride = -(-size // per) * per
    return like.new_empty(steps, stride)[:, :size].view(steps, batch, width)


class _Buffers:
    """What the forward pass keeps for the backward pass, written in place step by step (no
    per-step allocations, no stacking): [T, B, *] each; `states` holds h_0..h_T. Every step's
    block starts 64-byte aligned (`_per_step`)."""

    def __init__(self, like: torch.Tensor, steps: int, batch: int, hidden: int) -> None:
        self.states = _per_step(like, steps + 1, batch, hidden)
        self.gates = _per_step(like, steps, batch, 3 * hidden)  # W_hh h + b_hh: r, z, n blocks
        self.rz = _per_step(like, steps, batch, 2 * hidden)  # the r and z gates
        self.n = _per_step(like, steps, batch, hidden)
        # per-step views, taken once (indexing in the loop costs more than the arithmetic)
        self.steps = list(
            zip(
                self.states[:-1].unbind(),
                self.gates.unbind(),
                self.rz.unbind(),
                self.n.unbind(),
                self.states[1:].unbind(),
                strict=True,
            )
        )


def _cell(
    gi: torch.Tensor, w_hh_t: torch.Tensor, b_hh: torch.Tensor, saved: _Buffers, t: int
) -> torch.Tensor:
    """GRU step t from the input projection gi [B, 3H] and `saved.states[t]`; writes h_{t+1}.

    ATen's GRU cell's operations in its order (so the values are bit for bit torch's):
    r, z = sigmoid(gh_rz + gi_rz); n = tanh(gi_n + gh_n * r); h' = (h - n) * z + n. The two
    sigmoids run on [B, H] views one by one, as ATen's do on its gate chunks: ATen's kernels
    take each row's first multiple of two vectors vectorized and the rest with the scalar loop
    (a last bit apart), so one sigmoid over the contiguous [B, 2H] block would split elsewhere
    (H 16 or 48 under AVX-512, 20 or 100 under AVX2)."""
    hidden = saved.n.shape[-1]
    h, gh, rz, n, h_next = saved.steps[t]
    torch.addmm(b_hh, h, w_hh_t, out=gh)
    torch.add(gh[:, : 2 * hidden], gi[:, : 2 * hidden], out=rz)
    r, z = rz[:, :hidden].sigmoid_(), rz[:, hidden:].sigmoid_()
    torch.mul(gh[:, 2 * hidden :], r, out=n).add_(gi[:, 2 * hidden :]).tanh_()
    torch.sub(h, n, out=h_next).mul_(z).add_(n)
    return h_next


def _gate_factors(saved: _Buffers) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """For all steps at once, then split by step: (factors turning dh into the hidden-gate
    gradients [B, 3, H], the factor turning dh into dn_pre [B, H], z [B, H])."""
    steps, batch, hidden = saved.n.shape
    r, z, n = saved.rz[..., :hidden], saved.rz[..., hidden:], saved.n
    to_gh = n.new_empty(steps, batch, 3, hidden)
    to_n = (1 - z) * (1 - n * n)
    torch.mul(to_n * saved.gates[..., 2 * hidden :], r * (1 - r), out=to_gh[:, :, 0])
    torch.mul(saved.states[:-1] - n, z * (1 - z), out=to_gh[:, :, 1])
    torch.mul(to_n, r, out=to_gh[:, :, 2])
    return list(zip(to_gh.unbind(), to_n.unbind(), z.unbind(), strict=True))


class _Grads:
    """The backward recurrence's per-step gate gradients, [T, B, *], written in place."""

    def __init__(self, like: torch.Tensor, steps: int, batch: int, hidden: int) -> None:
        self.gates = like.new_empty(steps, batch, 3, hidden)  # d(W_hh h + b_hh): r, z, n
        self.n = like.new_empty(steps, batch, hidden)  # dn_pre = d(W_in x + b_in)
        self.steps = list(zip(self.gates.unbind(), self.n.unbind(), strict=True))


def _recurrence_step(
    dh: torch.Tensor,
    factors: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    w_hh: torch.Tensor,
    grads: tuple[torch.Tensor, torch.Tensor],
) -> torch.Tensor:
    """dh [B, H] at h_{t+1} -> dL/dh_t [B, H], given step t's factors (`_gate_factors`);
    writes step t's gate gradients into `grads` ([B, 3, H], [B, H])."""
    to_gh, to_n, z = factors
    d_gh = torch.mul(to_gh, dh.unsqueeze(1), out=grads[0]).flatten(1)
    torch.mul(dh, to_n, out=grads[1])
    return torch.addmm(dh * z, d_gh, w_hh)


def _weight_grads(
    grads: _Grads, h_prev: torch.Tensor, inputs: torch.Tensor, w_ih: torch.Tensor, need_input: bool
) -> tuple[torch.Tensor | None, ...]:
    """From every step's gate gradients: (d inputs [T, B, I] or None, dW_ih, dW_hh, db_ih,
    db_hh), each weight gradient over all steps in one or two matrix products."""
    hidden = grads.n.shape[-1]
    d_gh = grads.gates.flatten(2).flatten(0, 1)  # [T*B, 3H]
    d_rz, d_n = d_gh[:, : 2 * hidden], grads.n.flatten(0, 1)
    x = inputs.flatten(0, 1)
    d_w_ih = torch.cat([d_rz.t() @ x, d_n.t() @ x])
    d_w_hh = d_gh.t() @ h_prev.flatten(0, 1)
    d_b_ih = torch.cat([d_rz.sum(0), d_n.sum(0)])
    d_inputs = None
    if need_input:
        d_inputs = torch.addmm(d_rz @ w_ih[: 2 * hidden], d_n, w_ih[2 * hidden :])
        d_inputs = d_inputs.view(inputs.shape)
    return d_inputs, d_w_ih, d_w_hh, d_b_ih, d_gh.sum(0)


class _Encode(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        w_ih: torch.Tensor,
        w_hh: torch.Tensor,
        b_ih: torch.Tensor,
        b_hh: torch.Tensor,
    ) -> torch.Tensor:
        batch, steps, _ = x.shape
        hidden = w_hh.shape[1]
        inputs = x.transpose(0, 1).contiguous()  # [T, B, I], ATen's layout for batch_first
        gi = torch.addmm(b_ih, inputs.flatten(0, 1), w_ih.t()).view(steps, batch, 3 * hidden)
        saved = _Buffers(x, steps, batch, hidden)
        saved.states[0].zero_()
        w_hh_t = w_hh.t()
        for t in range(steps):
            _cell(gi[t], w_hh_t, b_hh, saved, t)
        ctx.saved = saved
        ctx.save_for_backward(inputs, w_ih, w_hh)
        return saved.states[-1].clone()

    @staticmethod
    @_first_order
    def backward(ctx: Any, dh: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        inputs, w_ih, w_hh = ctx.saved_tensors
        saved: _Buffers = ctx.saved
        factors = _gate_factors(saved)
        steps, batch, hidden = saved.n.shape
        grads = _Grads(dh, steps, batch, hidden)
        for t in range(steps - 1, -1, -1):
            dh = _recurrence_step(dh, factors[t], w_hh, grads.steps[t])
        d_inputs, *weights = _weight_grads(
            grads, saved.states[:-1], inputs, w_ih, ctx.needs_input_grad[0]
        )
        d_x = None if d_inputs is None else d_inputs.transpose(0, 1)
        return (d_x, *weights)


class _Decode(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        first: torch.Tensor,
        h: torch.Tensor,
        target: torch.Tensor | None,
        use_truth: torch.Tensor | None,
        w_ih: torch.Tensor,
        w_hh: torch.Tensor,
        b_ih: torch.Tensor,
        b_hh: torch.Tensor,
        w_head: torch.Tensor,
        b_head: torch.Tensor,
        steps: int,
    ) -> torch.Tensor:
        batch, hidden = h.shape
        w_ih_t, w_hh_t, w_head_t = w_ih.t(), w_hh.t(), w_head.t()
        saved = _Buffers(h, steps, batch, hidden)
        saved.states[0].copy_(h)
        inputs = _per_step(first, steps, batch, first.shape[1])  # each step's input
        outputs = _per_step(first, steps, batch, first.shape[1])
        inputs[0].copy_(first)
        gi = first.new_empty(batch, 3 * hidden)
        step_inputs, step_outputs = inputs.unbind(), outputs.unbind()
        truth = None
        if use_truth is not None and target is not None:
            truth = list(zip(use_truth.unbind(1), target.unbind(1), strict=True))
        for t in range(steps):
            torch.addmm(b_ih, step_inputs[t], w_ih_t, out=gi)
            h = _cell(gi, w_hh_t, b_hh, saved, t)
            prediction = torch.addmm(b_head, h, w_head_t)
            prediction = torch.add(step_inputs[t], prediction, out=step_outputs[t])
            if t + 1 == steps:
                break
            if truth is not None:
                torch.where(truth[t][0], truth[t][1], prediction, out=step_inputs[t + 1])
            else:
                step_inputs[t + 1].copy_(prediction)
        ctx.saved = saved
        ctx.save_for_backward(use_truth, w_ih, w_hh, w_head, inputs)
        return outputs.transpose(0, 1)

    @staticmethod
    @_first_order
    def backward(ctx: Any, d_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        use_truth, w_ih, w_hh, w_head, inputs = ctx.saved_tensors
        saved: _Buffers = ctx.saved
        factors = _gate_factors(saved)
        steps, batch, hidden = saved.n.shape
        grads = _Grads(d_out, steps, batch, hidden)
        w_ih_rz, w_ih_n = w_ih[: 2 * hidden], w_ih[2 * hidden :]
        # a step's prediction feeds the next step unless the truth replaced it
        passes = None if use_truth is None else (~use_truth).to(d_out.dtype)
        dh = torch.zeros_like(saved.states[0])
        d_next = torch.zeros_like(inputs[0])  # dL/d(input of step t+1)
        d_preds = d_out.new_empty(steps, batch, d_out.shape[-1])
        step_d_out, step_d_preds = d_out.unbind(1), d_preds.unbind()
        step_passes = None if passes is None else passes.unbind(1)
        for t in range(steps - 1, -1, -1):
            if step_passes is None:
                d_pred = torch.add(step_d_out[t], d_next, out=step_d_preds[t])
            else:
                d_pred = torch.addcmul(step_d_out[t], d_next, step_passes[t], out=step_d_preds[t])
            d_gh, d_n = grads.steps[t]
            dh = _recurrence_step(torch.addmm(dh, d_pred, w_head), factors[t], w_hh, grads.steps[t])
            d_next = torch.addmm(torch.addmm(d_pred, d_gh[:, :2].flatten(1), w_ih_rz), d_n, w_ih_n)
        _, d_w_ih, d_w_hh, d_b_ih, d_b_hh = _weight_grads(
            grads, saved.states[:-1], inputs, w_ih, False
        )
        d_pred_all = d_preds.flatten(0, 1)
        d_w_head = d_pred_all.t() @ saved.states[1:].flatten(0, 1)
        d_b_head = d_pred_all.sum(0)
        return (
            d_next,
            dh,
            None,
            None,
            d_w_ih,
            d_w_hh,
            d_b_ih,
            d_b_hh,
            d_w_head,
            d_b_head,
            None,
        )


def encode(x: torch.Tensor, gru: torch.nn.GRU) -> torch.Tensor:
    """The GRU encoder's final state, with the hand-written backward pass.

    The GRU equations as `torch.nn.GRU` documents them (Cho et al., 2014; the reset gate applied
    to the hidden projection), see the module's docstring; the forward pass is ATen's GRU cell's
    operations in their order, so the result equals `gru(x)[1][0]` bit for bit.

    Args:
        x: the inputs [B, T, I] (batch first), float; T >= 1.
        gru: a single-layer, unidirectional, batch-first `nn.GRU` with biases, I inputs and H
            hidden units, on x's device and dtype. Its weights get gradients as through `gru`.

    Returns:
        The state after the last step [B, H], from a zero initial state.

    Raises:
        RuntimeError: from the backward pass, when it runs under `create_graph=True` (for a
            second derivative, which it cannot give).
    """
    return _Encode.apply(x, gru.weight_ih_l0, gru.weight_hh_l0, gru.bias_ih_l0, gru.bias_hh_l0)


def decode(
    first: torch.Tensor,
    state: torch.Tensor,
    gru: torch.nn.GRU,
    head: torch.nn.Linear,
    steps: int,
    target: torch.Tensor | None = None,
    use_truth: torch.Tensor | None = None,
) -> torch.Tensor:
    """The residual autoregressive decoder, with the hand-written backward pass.

    Each step runs the GRU cell (the equations `torch.nn.GRU` documents; Cho et al., 2014) on
    its input and the state, and predicts `input + head(h)`; the next input is the truth where
    teacher forcing (scheduled sampling; Bengio et al., 2015) draws it, else that prediction.
    The outputs equal, bit for bit, calling `gru` on one step of shape [B, 1, C] at a time and
    `head` on its output.

    Args:
        first: the first step's input [B, C] (the encoder's last input).
        state: the initial state [B, H] (the encoder's final state).
        gru: a single-layer, unidirectional, batch-first `nn.GRU` with biases, C inputs and H
            hidden units.
        head: an `nn.Linear` from H to C features, with a bias.
        steps: how many steps to generate, >= 1.
        target: the truth [B, steps, C], read where `use_truth` holds; None: never fed.
        use_truth: [B, steps, 1] (bool), True where step t + 1's input is `target[:, t]`
            instead of step t's prediction; None (or no `target`): always the prediction.

    Returns:
        The predictions [B, steps, C].

    Raises:
        RuntimeError: from the backward pass, when it runs under `create_graph=True` (for a
            second derivative, which it cannot give).
    """
    return _Decode.apply(
        first,
        state,
        target,
        use_truth,
        gru.weight_ih_l0,
        gru.weight_hh_l0,
        gru.bias_ih_l0,
        gru.bias_hh_l0,
        head.weight,
        head.bias,
        steps,
    )
