"""The hand-written backward pass for the GRU encoder and decoder (`gru_bptt`): same outputs as
torch's modules bit for bit at the shapes a user trains (hidden 16 to 128, any batch size, short
and long sequences) under each CPU vector width, gradients equal to autograd's (gradcheck in
float64), first derivatives only (a second one raises), and used only where it applies."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch
from packaging.requirements import Requirement
from packaging.version import Version

from tune_app.training import gru_bptt
from tune_app.training.model import ModelConfig, Seq2Seq

ROOT = Path(__file__).resolve().parents[2]
BIT_EXACT_ON = (
    "gru_bptt's forward pass repeats the operations of ATen's GRU cell in their order (checked on "
    "the torch versions pyproject.toml admits); on torch {version} it differs from nn.GRU. Use a "
    "torch within pyproject.toml's bound, or, to move the bound: compare `_cell` in "
    "tune_app/training/gru_bptt.py with that torch's GRU cell (aten/src/ATen/native/RNN.cpp), "
    "reorder it until this test passes, then widen the bound"
)


def _model(components: int = 3, hidden: int = 16, dtype: torch.dtype = torch.float32) -> Seq2Seq:
    torch.manual_seed(0)
    return Seq2Seq(ModelConfig(components=components, hidden=hidden)).to(dtype)


def _run(model: Seq2Seq, by_hand: bool, x, y, teacher_forcing: float, noise: float):  # type: ignore[no-untyped-def]
    """Outputs and parameter gradients of an MSE loss, through one path or the other."""
    model._bptt_by_hand = lambda _x: by_hand  # type: ignore[method-assign]
    generator = torch.Generator().manual_seed(3)
    pred = model(
        x, y.shape[1], target=y, teacher_forcing=teacher_forcing, noise=noise, generator=generator
    )
    grads = torch.autograd.grad((pred - y).square().mean(), list(model.parameters()))
    return pred.detach(), grads


def _assert_same_as_torch(model: Seq2Seq, x, y, teacher_forcing: float, noise: float) -> None:  # type: ignore[no-untyped-def]
    pred_torch, grads_torch = _run(model, False, x, y, teacher_forcing, noise)
    pred_hand, grads_hand = _run(model, True, x, y, teacher_forcing, noise)
    # the same arithmetic in the same order
    assert torch.equal(pred_torch, pred_hand), BIT_EXACT_ON.format(version=torch.__version__)
    for (name, _), a, b in zip(model.named_parameters(), grads_torch, grads_hand, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize(
    ("batch", "steps_in", "steps_out", "teacher_forcing", "noise"),
    [(64, 48, 24, 0.0, 0.0), (64, 48, 24, 0.5, 0.05), (7, 5, 3, 1.0, 0.0), (1, 2, 1, 0.3, 0.1)],
)
def test_outputs_equal_torch_modules_and_gradients_equal_autograd(
    batch, steps_in, steps_out, teacher_forcing, noise
):
    model = _model()
    model.train()
    x, y = torch.randn(batch, steps_in, 3), torch.randn(batch, steps_out, 3)
    _assert_same_as_torch(model, x, y, teacher_forcing, noise)


@pytest.mark.parametrize("hidden", [16, 37, 64, 128])  # the capacity search draws any of 16-128
@pytest.mark.parametrize("batch", [1, 7, 33])  # one window; odd sizes, as an epoch's last batch
@pytest.mark.parametrize(("steps_in", "steps_out"), [(1, 1), (5, 3), (48, 24)])
def test_bit_equal_forward_and_autograd_gradients_at_every_shape(
    hidden, batch, steps_in, steps_out
):
    model = _model(components=3, hidden=hidden)
    model.train()
    torch.manual_seed(hidden + batch + steps_in)
    x, y = torch.randn(batch, steps_in, 3), torch.randn(batch, steps_out, 3)
    _assert_same_as_torch(model, x, y, teacher_forcing=0.5, noise=0.05)


WIDTHS = ["DEFAULT", "AVX2", "AVX512"]  # ATen's CPU kernels, narrowest vectors first


@pytest.mark.parametrize("width", WIDTHS[:-1])
def test_bit_equal_under_each_narrower_vector_width_this_cpu_has(width):
    """ATen picks its elementwise kernels by the CPU's widest vectors (ATEN_CPU_CAPABILITY
    forces narrower ones), and the part of a row past a multiple of two vectors takes the scalar
    loop, a last bit off the vector one: the shape table's short sequences run again under each
    width below this machine's own (run above), so a machine with other vectors agrees too."""
    own = torch.backends.cpu.get_cpu_capability()
    if own not in WIDTHS or WIDTHS.index(width) >= WIDTHS.index(own):
        pytest.skip(f"{width} is not narrower than this CPU's {own}")
    env = {**os.environ, "ATEN_CPU_CAPABILITY": width.lower()}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            __file__,
            "-k",
            # the short sequences: a width's last bits differ from the first step on
            "every_shape and not 48-24",
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    assert " passed" in done.stdout and "skipped" not in done.stdout


def test_torch_is_bounded_to_the_versions_the_bit_equal_forward_was_checked_on():
    """pyproject.toml admits the torch this suite runs on, the one `make venv` and the image
    install, and no minor version beyond it (ATen may reorder the GRU cell's operations)."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (torch_req,) = [
        Requirement(r) for r in pyproject["project"]["dependencies"] if r.startswith("torch")
    ]
    installed = Version(torch.__version__.split("+")[0])
    pinned = {
        source: Version(re.search(r"torch==([\d.]+)", (ROOT / source).read_text())[1])  # type: ignore[index]
        for source in ("Makefile", "docker/Dockerfile")
    }
    for where, version in [("installed", installed), *pinned.items()]:
        assert torch_req.specifier.contains(version), f"{where} torch {version} vs {torch_req}"
    next_minor = Version(f"{installed.major}.{installed.minor + 1}")
    assert not torch_req.specifier.contains(next_minor), f"{torch_req} is not bounded above"


def test_encoder_gradients_pass_gradcheck():
    gru = torch.nn.GRU(2, 4, batch_first=True).double()
    x = torch.randn(3, 5, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, *w: gru_bptt._Encode.apply(x, *w), (x, *gru.parameters())
    )


@pytest.mark.parametrize("teacher_forcing", [None, 0.5])
def test_decoder_gradients_pass_gradcheck(teacher_forcing):
    torch.manual_seed(1)
    gru = torch.nn.GRU(2, 4, batch_first=True).double()
    head = torch.nn.Linear(4, 2).double()
    first = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    state = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    target = torch.randn(3, 4, 2, dtype=torch.float64)
    mask = None if teacher_forcing is None else torch.rand(3, 4, 1) < teacher_forcing

    def decode(first, state, *weights):  # type: ignore[no-untyped-def]
        return gru_bptt._Decode.apply(first, state, target, mask, *weights, 4)

    inputs = (first, state, *gru.parameters(), *head.parameters())
    assert torch.autograd.gradcheck(decode, inputs)


PATHS = {
    "model": lambda model, x, y: model(x, y.shape[1], target=y, teacher_forcing=0.5),
    "encoder": lambda model, x, y: gru_bptt.encode(x, model.encoder),
    # what the error advises: an encoding given to the model runs torch's modules throughout
    "torch modules": lambda model, x, y: model(
        x, y.shape[1], target=y, teacher_forcing=0.5, encoded=model.encode(x)
    ),
}


def _gradient_of_gradient(path: str, steps_in: int, loss: str, penalty: str) -> list[torch.Tensor]:
    """A second derivative through a model in training: the gradient of `loss` with
    `create_graph=True`, then with respect to the weights the gradient of a penalty on it (a
    gradient penalty on the inputs, or the square norm of the weights' gradient)."""
    model = _model(hidden=8)
    model.train()
    torch.manual_seed(2)
    x = torch.randn(3, steps_in, 3, requires_grad=True)
    out = PATHS[path](model, x, torch.randn(3, 2, 3))
    value = out.sum() if loss == "linear" else out.square().mean()
    weights = list(model.parameters())
    if penalty == "input gradient":
        (d_x,) = torch.autograd.grad(value, [x], create_graph=True)
        (value + d_x.square().sum()).backward()
        return [w.grad for w in weights if w.grad is not None]
    grads = torch.autograd.grad(value, weights, create_graph=True)
    second = torch.autograd.grad(sum(g.square().sum() for g in grads), weights, allow_unused=True)
    return [g for g in second if g is not None]


@pytest.mark.parametrize(
    ("path", "steps_in", "loss", "penalty"),
    [
        # what each did with no marking at all / with `@once_differentiable` alone:
        # a number without the GRU's second-order part / the penalty's part silently left out
        ("encoder", 1, "linear", "input gradient"),
        # torch's "functions with out=... arguments don't support automatic differentiation" /
        # the penalty's part silently left out
        ("model", 1, "linear", "input gradient"),
        # out=... / "element 0 of tensors does not require grad"
        ("model", 1, "linear", "weight gradient"),
        # out=... / "trying to differentiate twice a function marked with @once_differentiable"
        ("model", 5, "mse", "input gradient"),
        # out=... / the GRU's second-order part silently left out (grad() prunes the marker)
        ("model", 5, "mse", "weight gradient"),
    ],
)
def test_a_second_derivative_raises_and_names_torch_modules_as_the_way(
    path, steps_in, loss, penalty
):
    with pytest.raises(RuntimeError, match=r"first derivatives only.*encoded=model\.encode\(x\)"):
        _gradient_of_gradient(path, steps_in, loss, penalty)


@pytest.mark.parametrize("penalty", ["input gradient", "weight gradient"])
def test_the_way_the_error_names_takes_a_second_derivative(penalty):
    second = _gradient_of_gradient("torch modules", 5, "mse", penalty)
    assert len(second) == 10  # encoder and decoder: 2 weights, 2 biases each; the head: 2
    assert all(torch.isfinite(g).all() and g.abs().sum() > 0 for g in second)


@pytest.mark.parametrize(
    ("config", "grad", "expected"),
    [
        (ModelConfig(), True, True),
        (ModelConfig(), False, False),
        (ModelConfig(cell="lstm"), True, False),
        (ModelConfig(layers=2), True, False),
        (ModelConfig(dropout=0.1), True, False),
    ],
)
def test_used_only_for_one_layer_gru_training_on_cpu(config, grad, expected):
    model = Seq2Seq(config)
    with torch.set_grad_enabled(grad):
        assert model._bptt_by_hand(torch.zeros(1, 2, config.components)) is expected
