"""SteerableUNet (escnn): exact 90° equivariance, parameter budget, mode-independent checkpoints, export/scripting,
ckpt_export, bad input, training steps."""

import json
import os
import subprocess
import sys

import pytest
import torch
from monai.engines import SupervisedTrainer
from monai.networks.utils import convert_to_torchscript

from monai_equivariant.networks.nets import P4UNet, PlainSteerableUNet, SteerableUNet, count_parameters
from monai_equivariant.utils import assert_equivariant, export

from helpers import assert_matches, trained_briefly

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("num_rotations,reflections,group,kwargs", [
    (8, False, "p4", {}),
    (8, False, "p4", {"frequencies_cutoff": 0.5}),
    (4, False, "p4", {}),
    (12, False, "p4", {}),
    (4, True, "p4m", {}),
    (-1, False, "p4", {}),  # SO(2), band-limited irreps
    (-1, True, "p4m", {}),  # O(2)
])
def test_exactly_equivariant_on_the_grid(num_rotations, reflections, group, kwargs):
    net = SteerableUNet(2, 2, 2, (2, 3, 4), num_rotations=num_rotations, reflections=reflections, **kwargs)
    trained_briefly(net)
    for size in [(16, 16), (24, 20)]:
        with torch.no_grad():
            errors = assert_equivariant(net, group, torch.randn((2, 2) + size), rtol=1e-4)
        assert len(errors) == (4 if group == "p4" else 8)


def test_parameters_well_below_p4unet_at_same_depth():
    steerable, p4 = count_parameters(SteerableUNet()), count_parameters(P4UNet())
    assert steerable < 0.4 * p4, (steerable, p4)  # 654,749 vs 1,963,137
    so2 = count_parameters(SteerableUNet(num_rotations=-1))
    assert so2 < 0.3 * p4, so2


def _same_output(a, b, x):
    with torch.no_grad():
        assert_matches(a.eval()(x), b.eval()(x), b)


@pytest.mark.parametrize("num_rotations", [8, -1])
def test_checkpoint_loads_strictly_across_modes(num_rotations):
    kwargs = dict(spatial_dims=2, in_channels=1, out_channels=2, channels=(2, 3), num_rotations=num_rotations)
    x = torch.randn(2, 1, 8, 8)
    source = SteerableUNet(**kwargs)
    trained_briefly(source, (8, 8)).train()
    train_keys = list(source.state_dict())
    saved_in_train = {k: v.clone() for k, v in source.state_dict().items()}
    with torch.no_grad():
        source.eval()(x)  # escnn would add `filter` buffers now
    assert list(source.state_dict()) == train_keys
    # only learnt tensors and norm statistics: no eval filters, no sampled basis or index tables
    assert not any(k.endswith(("filter", "expanded_bias", "bias_expansion")) or "_basisexpansion" in k
                   for k in train_keys)
    saved_in_eval = source.state_dict()

    into_eval = SteerableUNet(**kwargs).eval()
    with torch.no_grad():
        into_eval(x)  # fills the eval cache: loading must not leave it stale
    into_eval.load_state_dict(saved_in_train, strict=True)
    _same_output(into_eval, source, x)

    into_train = SteerableUNet(**kwargs).train()
    into_train.load_state_dict(saved_in_eval, strict=True)
    _same_output(into_train, source, x)

    # checkpoints written by plain escnn (eval mode adds filter/expanded_bias) still load strictly
    escnn_style = dict(saved_in_eval)
    escnn_style["encoder.0.0.filter"] = torch.zeros(1)
    escnn_style["encoder.0.0.expanded_bias"] = torch.zeros(1)
    SteerableUNet(**kwargs).load_state_dict(escnn_style, strict=True)


@pytest.mark.parametrize("num_rotations,reflections", [(8, False), (-1, False), (4, True)])
def test_export_equals_and_scripts(num_rotations, reflections, tmp_path):
    net = trained_briefly(SteerableUNet(2, 3, 2, (2, 3, 4), num_rotations=num_rotations, reflections=reflections))
    x = torch.randn(2, 3, 16, 16)
    plain = export(net)
    assert isinstance(plain, PlainSteerableUNet) and not isinstance(plain, SteerableUNet)
    assert not any(type(m).__module__.startswith("escnn") for m in plain.modules())
    with torch.no_grad():
        reference = net(x)
        assert_matches(plain(x), reference, net)
        assert_matches(torch.jit.script(plain)(x), reference, net)
        assert_matches(torch.jit.script(net)(x), reference, net)  # scripts the export
    convert_to_torchscript(net, filename_or_obj=str(tmp_path / "net.ts"), verify=True, inputs=[x])
    with torch.no_grad():
        assert_matches(torch.jit.load(str(tmp_path / "net.ts"))(x), reference, net)


def test_monai_bundle_ckpt_export(tmp_path):
    """`python -m monai.bundle ckpt_export` on a config whose network_def is a SteerableUNet (it scripts the net,
    which TorchScript turns into the plain export via ``__prepare_scriptable__``)."""
    net_def = {
        "_target_": "monai_equivariant.networks.nets.SteerableUNet",
        "spatial_dims": 2, "in_channels": 1, "out_channels": 2, "channels": [2, 4], "num_rotations": 8,
    }
    config = tmp_path / "inference.json"
    config.write_text(json.dumps({"imports": ["$import monai_equivariant"], "network_def": net_def}))
    net = SteerableUNet(2, 1, 2, (2, 4))
    trained_briefly(net, (8, 8))
    torch.save(net.state_dict(), tmp_path / "model.pt")  # saved in eval mode, loaded strictly into a train-mode net
    out = tmp_path / "model.ts"
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "monai.bundle", "ckpt_export", "network_def", "--filepath", str(out),
           "--ckpt_file", str(tmp_path / "model.pt"), "--config_file", str(config), "--bundle_root", str(tmp_path)]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    x = torch.randn(1, 1, 8, 8)
    with torch.no_grad():
        assert_matches(torch.jit.load(str(out))(x), net(x), net)


def test_bad_input_and_arguments_rejected():
    net = SteerableUNet(2, 3, 1, (2, 2, 2, 2, 2))
    with pytest.raises(ValueError, match="not a multiple of 16"):
        net(torch.randn(1, 3, 40, 48))
    with pytest.raises(ValueError, match="expected 3 input channels, got 1"):
        net(torch.randn(1, 1, 32, 32))
    with pytest.raises(ValueError, match="2 spatial dims"):
        net(torch.randn(1, 3, 32, 32, 32))
    with pytest.raises(ValueError, match="spatial_dims must be 2"):
        SteerableUNet(3, 1, 1)
    with pytest.raises(ValueError, match="num_rotations"):
        SteerableUNet(2, 1, 1, (2, 2), num_rotations=0)
    with pytest.raises(ValueError, match="odd"):
        SteerableUNet(2, 1, 1, (2, 2), kernel_size=4)
    with pytest.raises(ValueError, match="channels"):
        SteerableUNet(2, 1, 1, (2,))
    with pytest.raises(ValueError, match="norm='batch' or None"):
        SteerableUNet(2, 1, 1, (2, 2), num_rotations=-1, norm="instance")


def _trainer(net, device, amp):
    data = [{"image": torch.randn(2, 1, 16, 16), "label": (torch.rand(2, 1, 16, 16) > 0.5).float()}]
    return SupervisedTrainer(
        device=torch.device(device), max_epochs=1, train_data_loader=data, network=net.to(device),
        optimizer=torch.optim.Adam(net.parameters(), 1e-3), loss_function=torch.nn.BCEWithLogitsLoss(), amp=amp,
    )


@pytest.mark.parametrize("num_rotations", [8, -1])
def test_supervised_trainer_step_float32_cpu(num_rotations):
    net = SteerableUNet(2, 1, 1, (2, 4), num_rotations=num_rotations)
    before = [p.detach().clone() for p in net.parameters()]
    trainer = _trainer(net, "cpu", amp=False)
    trainer.run()
    assert torch.isfinite(torch.as_tensor(trainer.state.output[0]["loss"]))
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))


def test_bfloat16_autocast_forward_backward_cpu():
    """The mixed-precision path on CPU (SupervisedTrainer(amp=True) autocasts on CUDA only)."""
    net = SteerableUNet(2, 1, 1, (2, 4), num_rotations=-1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = net(torch.randn(2, 1, 16, 16))
    y.float().square().mean().backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in net.parameters())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="SupervisedTrainer(amp=True) autocasts on CUDA only")
@pytest.mark.parametrize("num_rotations", [8, -1])
def test_supervised_trainer_amp_cuda(num_rotations):
    net = SteerableUNet(2, 1, 1, (2, 4), num_rotations=num_rotations)
    trainer = _trainer(net, "cuda", amp=True)
    trainer.run()
    assert torch.isfinite(torch.as_tensor(trainer.state.output[0]["loss"]))
    net.eval()
    with torch.no_grad():
        assert_equivariant(net, "p4", torch.randn(2, 1, 16, 16, device="cuda"))


def test_import_does_not_load_escnn():
    code = "import sys, monai_equivariant.networks.nets; assert 'escnn' not in sys.modules"
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120)


def test_build_skips_escnn_he_init_and_initialises_he_variance(monkeypatch):
    """escnn's uncached generalized_he_init (seconds per wide layer) is never run; filters get He variance."""
    import escnn.nn.init

    from monai_equivariant.layers.steerable import SteerableConv

    def forbidden(*args, **kwargs):
        raise AssertionError("generalized_he_init called during build")

    monkeypatch.setattr(escnn.nn.init, "generalized_he_init", forbidden)
    net = SteerableUNet(2, 3, 1, (4, 8, 16))
    convs = [m for m in net.modules() if isinstance(m, SteerableConv)]
    assert len(convs) == 10
    for conv in convs:
        bank, _ = conv.expanded()
        fan_in_energy = bank.detach().pow(2).sum() / bank.shape[0]
        assert abs(fan_in_energy.item() - 2.0) < 1e-3  # E[sum over inputs and taps of w²] = 2 per output


def test_networks_share_no_basis_with_each_other():
    """escnn caches one basis module per basis and hands it to every layer: moving one net (``.double()``) must
    not move another's, and a net built afterwards must still build and run in float32 (failed before: "expected
    scalar type Float but found Double")."""
    first = SteerableUNet(2, 1, 1, channels=(2, 4)).double()
    second = SteerableUNet(2, 1, 1, channels=(2, 4))
    assert all(b.dtype == torch.float32 for b in second.buffers() if b.is_floating_point())
    assert all(b.dtype == torch.float64 for b in first.buffers() if b.is_floating_point())
    first_buffers = {id(b) for b in first.buffers()}
    assert not any(id(b) in first_buffers for b in second.buffers())
    x = torch.randn(1, 1, 16, 16)
    assert second.eval()(x).dtype == torch.float32
    assert first.eval()(x.double()).dtype == torch.float64
