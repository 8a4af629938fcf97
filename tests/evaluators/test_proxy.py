import math

import pytest
import torch
import torchvision
from torch import nn

from fusionnas.evaluators import (
    OutOfMemory,
    ProxyBudget,
    ProxyResult,
    ProxyTrainingError,
    TrainingDiverged,
    get_dataset,
    train_proxy,
)
from fusionnas.evaluators.proxy import eval_batch_size, validate
from fusionnas.layers import DCTPointwise, create_fusion, frequency_regularizer, list_fusions

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def digits():
    return get_dataset("digits", seed=0)


def _net(fusion: nn.Module | None = None, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU6(),
        fusion if fusion is not None else nn.Conv2d(16, 16, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU6(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU6(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.1), nn.Linear(32, 10),
    )


class _Raises(nn.Module):
    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.linear = nn.Linear(1, 1)
        self.error = error

    def forward(self, x):
        raise self.error


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"epochs": -1}, "epochs"),
        ({"epochs": 1, "steps": 5}, "not both"),
        ({"steps": 0}, "steps"),
        ({"steps": 2.5}, "steps"),
        ({"data_fraction": 0}, "data_fraction"),
        ({"batch_size": 0}, "batch_size"),
        ({"lr": 0}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"label_smoothing": 1.0}, "label_smoothing"),
        ({"operator_loss_weight": -1e-3}, "operator_loss_weight"),
        ({"resolution": 0}, "resolution"),
        ({"device": "tpu"}, "device"),
    ],
)
def test_budget_rejects_bad_values(kwargs, field):
    with pytest.raises(ValueError, match=field):
        ProxyBudget(**kwargs)


def test_trains_on_digits_and_reports(digits):
    budget = ProxyBudget(epochs=2, data_fraction=0.5, batch_size=64, lr=0.2, resolution=16)
    result = train_proxy(_net(), digits, budget)
    assert isinstance(result, ProxyResult)
    assert result.train_samples == pytest.approx(len(digits.x_train) / 2, abs=10)
    assert result.steps == 2 * (result.train_samples // 64) == len(result.loss_curve)
    assert result.epochs == pytest.approx(2.0)
    assert result.device == "cpu" and result.train_seconds > 0 and result.eval_seconds > 0
    assert result.val_accuracy > 0.3  # chance is 0.1
    assert math.isfinite(result.val_loss)
    assert sum(result.loss_curve[-5:]) < sum(result.loss_curve[:5])
    assert set(result.to_dict()) >= {"val_accuracy", "loss_curve", "train_seconds"}


def test_deterministic_on_cpu_and_leaves_the_global_rng_alone(digits):
    budget = ProxyBudget(steps=10, batch_size=32, data_fraction=0.5, resolution=16, seed=3)
    model = _net()
    state = torch.random.get_rng_state()
    first = train_proxy(model, digits, budget)
    assert torch.equal(torch.random.get_rng_state(), state)
    second = train_proxy(_net(), digits, budget)
    assert first.loss_curve == second.loss_curve
    assert first.val_accuracy == second.val_accuracy and first.val_loss == second.val_loss
    other = train_proxy(_net(), digits, ProxyBudget(steps=10, batch_size=32, data_fraction=0.5, resolution=16, seed=4))
    assert other.loss_curve != first.loss_curve


def test_data_fraction_resolution_and_augment(digits):
    seen = []

    class Spy(nn.Module):
        def forward(self, x):
            seen.append(tuple(x.shape))
            return x

    model = nn.Sequential(Spy(), *_net())
    result = train_proxy(
        model, digits, ProxyBudget(epochs=1, batch_size=50, data_fraction=0.25, resolution=16, augment=True)
    )
    assert result.train_samples == pytest.approx(0.25 * len(digits.x_train), abs=10)
    assert result.steps == result.train_samples // 50
    assert all(shape[1:] == (3, 16, 16) for shape in seen)


def test_cpu_validation_batches_keep_activations_small_and_give_the_same_accuracy(digits):
    model = _net().eval()
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert eval_batch_size(ProxyBudget(resolution=16), cpu, (32, 32)) == 128
    assert eval_batch_size(ProxyBudget(), cpu, (32, 32)) == 32
    assert eval_batch_size(ProxyBudget(eval_batch_size=8), cpu, (32, 32)) == 8
    assert eval_batch_size(ProxyBudget(resolution=512), cpu, (32, 32)) == 1
    assert eval_batch_size(ProxyBudget(resolution=16), cuda, (32, 32)) == 512
    seen = []
    hook = model[0].register_forward_pre_hook(lambda module, args: seen.append(len(args[0])))
    chunked = validate(model, digits, ProxyBudget(resolution=16), cpu)
    hook.remove()
    assert max(seen) == 128 and sum(seen) == len(digits.x_val)
    one_by_one = validate(model, digits, ProxyBudget(resolution=16, eval_batch_size=1), cpu)
    assert chunked[0] == one_by_one[0] and chunked[1] == pytest.approx(one_by_one[1], rel=1e-5)


def test_frequency_regulariser_is_in_the_loss(digits):
    def dct_net():
        torch.manual_seed(1)
        return _net(DCTPointwise(16, 16))

    budget = dict(steps=10, batch_size=32, lr=0.05, resolution=16)
    reference = dct_net()
    plain = train_proxy(reference, digits, ProxyBudget(operator_loss_weight=0.0, **budget))
    model = dct_net()
    weighted = train_proxy(model, digits, ProxyBudget(operator_loss_weight=0.5, **budget))
    # step 1: same weights and batch, so the losses differ by exactly weight x penalty
    fresh = dct_net()
    fresh(torch.zeros(1, 3, 16, 16))  # the penalty is taken at the layer's input size (8 x 8)
    penalty = frequency_regularizer(fresh).item()
    assert penalty > 0
    assert weighted.loss_curve[0] - plain.loss_curve[0] == pytest.approx(0.5 * penalty, rel=1e-4)
    # and the regulariser drives the frequency thresholds down
    dct = [m for m in model.modules() if isinstance(m, DCTPointwise)][0]
    dct_ref = [m for m in reference.modules() if isinstance(m, DCTPointwise)][0]
    assert dct.threshold.mean() < dct_ref.threshold.mean() - 1e-3


def test_nan_output_raises_training_diverged(digits):
    class NaNNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = _net()

        def forward(self, x):
            return self.net(x) * float("nan")

    with pytest.raises(TrainingDiverged, match="training loss is nan at step 1 of 5") as info:
        train_proxy(NaNNet(), digits, ProxyBudget(steps=5, batch_size=32))
    assert info.value.step == 1 and math.isnan(info.value.loss)
    assert isinstance(info.value, ProxyTrainingError) and info.value.reason == "diverged"


def test_huge_learning_rate_diverges(digits):
    with pytest.raises(TrainingDiverged, match="lower lr") as info:
        train_proxy(_net(), digits, ProxyBudget(steps=40, batch_size=32, lr=1e12, warmup_fraction=0.0, resolution=16))
    assert 1 < info.value.step <= 40


@pytest.mark.parametrize(
    "error",
    [
        torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"),
        RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"),
    ],
)
def test_out_of_memory_is_translated(digits, error):
    with pytest.raises(OutOfMemory, match="ran out of memory.*lower batch_size") as info:
        train_proxy(_Raises(error), digits, ProxyBudget(steps=2, batch_size=32))
    assert info.value.reason == "out_of_memory" and isinstance(info.value, ProxyTrainingError)


def test_other_errors_pass_through(digits):
    with pytest.raises(RuntimeError, match="shape mismatch") as info:
        train_proxy(_Raises(RuntimeError("shape mismatch")), digits, ProxyBudget(steps=2))
    assert not isinstance(info.value, ProxyTrainingError)


def test_wrong_class_count_is_a_value_error(digits):
    model = nn.Sequential(*list(_net())[:-1], nn.Linear(32, 7))
    with pytest.raises(ValueError, match=r"outputs shape \(8, 7\) but the data has 10 classes"):
        train_proxy(model, digits, ProxyBudget(steps=1, batch_size=8, resolution=16))


def test_mobilenet_v2_with_progress_bar(digits, capsys):
    model = torchvision.models.mobilenet_v2(num_classes=10, width_mult=0.25)
    result = train_proxy(model, digits, ProxyBudget(steps=2, batch_size=8, resolution=16), progress=True)
    assert len(result.loss_curve) == 2 and not model.training
    assert "proxy training" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without a GPU")
def test_cuda_without_gpu_is_a_value_error(digits):
    with pytest.raises(ValueError, match="no CUDA GPU"):
        train_proxy(_net(), digits, ProxyBudget(steps=1, device="cuda"))


@needs_cuda
@pytest.mark.parametrize("amp", [True, False])
@pytest.mark.parametrize("kind", list_fusions())
def test_cuda_trains_every_fusion(digits, kind, amp):
    model = _net(create_fusion(kind, 16, 16))
    result = train_proxy(model, digits, ProxyBudget(epochs=2, batch_size=64, lr=0.1, device="cuda", amp=amp))
    assert result.device.startswith("cuda")
    assert next(model.parameters()).is_cuda
    assert all(math.isfinite(v) for v in result.loss_curve)
    assert result.val_accuracy > 0.2


@needs_cuda
def test_cuda_auto_device_and_mobilenet(digits):
    model = torchvision.models.mobilenet_v2(num_classes=10, width_mult=0.5)
    result = train_proxy(model, digits, ProxyBudget(epochs=1, batch_size=128))
    assert result.device.startswith("cuda") and math.isfinite(result.val_loss)


@needs_cuda
def test_cuda_out_of_memory_is_translated_and_freed(digits):
    class Hog(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(3, 10)

        def forward(self, x):
            torch.empty(1 << 30, 1 << 20, device=x.device)  # 4 PiB of float32
            return self.linear(x.mean(dim=(2, 3)))

    before = torch.cuda.memory_allocated()
    with pytest.raises(OutOfMemory, match="cuda.* ran out of memory"):
        train_proxy(Hog(), digits, ProxyBudget(steps=2, batch_size=32, device="cuda"))
    assert torch.cuda.memory_allocated() - before < 64 << 20
