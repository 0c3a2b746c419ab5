"""What each network in the package costs, next to the plain net of equal parameters and of equal FLOPs.

Usage: python benchmarks/cost_table.py [--size2d 64] [--size3d 16] [--batch 2] [--repeats 3] [--smoke]
       [--only P4UNet SE2CNN ...] [--separable]

For every network (P4UNet, P4MUNet, SE2UNet, SteerableUNet, SE2CNN, GroupCNN with O / Oh / D4h) and two
plain baselines — the same architecture with ``group="trivial"`` and the channels of
:func:`~monai_equivariant.networks.nets.matched_channels` ``by="params"`` (equal parameters) and
``by="flops"`` (equal conv FLOPs) — it reports

  params         trainable parameters;
  GFLOPs/image   forward FLOPs of one image in eval mode (``torch.utils.flop_counter.FlopCounterMode``: convs,
                 matmuls; the eval filter caches are filled first, so filter expansion is not counted);
  train ms/step  median wall time of one training step (forward, mean loss, backward, SGD step) at ``--batch``,
                 the three nets of a row group timed round by round (interleaved);
  activation MiB the tensors saved for backward by one training forward at ``--batch`` (distinct storages,
                 parameters excluded; expanded filter banks included), collected with
                 ``torch.autograd.graph.saved_tensors_hooks``: deterministic, and what the backward pass holds
                 at the peak.

The row group "MONAI UNet" is issue 21's swap: MONAI's ``UNet(2, 3, 1, (16, 32, 64, 128, 256), (2, 2, 2, 2),
num_res_units=2)`` and ``P4UNet`` / ``P4MUNet`` with the same arguments, reading ``channels`` as fields (the default)
and with ``channels_as="params"`` / ``"flops"``; the column "× first row" gives each net's parameters and FLOPs over
the first row of its group (for the swap: MONAI's UNet). The row group "MONAI ResNet" is the same for MONAI's 2D
ResNet-10 layout (block_inplanes (16, 32, 64, 128)) and ``GroupResNet`` (p4). "MONAI BasicUNet" and "MONAI SegResNet": the same for
MONAI's BasicUNet (features (32, 32, 64, 128, 256, 32)) / SegResNet (init_filters 8) and their p4 twins. "DynUNet
plan, no group": the anisotropic nnU-Net plan (3 levels, filters (16, 32, 64)) without the group at 17³ (the twin's
odd sides; MONAI's own DynUNet takes multiples of the strides' products instead), then the D4h ``GroupDynUNet``
read as fields, by params (matched to MONAI's DynUNet) and by FLOPs (to this first row).

SteerableUNet's parameters follow escnn's steerable basis (fewer than |G|·C² per tap), so its equal-parameter
plain U-Net is found by scaling the equal-FLOPs channels until the count matches (closest of the candidates);
its equal-FLOPs plain U-Net uses |G| = 8 (C8 regular fields).

``--separable`` prints the separable section instead (:func:`separable_main`): each net with
``separable=True`` (every group conv after the lifting a ``SeparableGroupConv``), its full group twin of the same
fields and the plain net of the full one's parameters, timed together, with the separable net's ratios to both.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from monai_equivariant.networks.nets import (
    SE2CNN,
    GroupCNN,
    GroupUNet,
    P4MUNet,
    P4UNet,
    SE2UNet,
    count_parameters,
    matched_channels,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/timing.py, the sibling module
from timing import interleaved_times  # noqa: E402


@dataclass
class NetSpec:
    """A network, the group its channel counts refer to, and how to build its plain counterpart."""

    name: str
    group_label: str
    build: Callable[[], nn.Module]
    fields: tuple[int, ...]
    group: str  # group whose order the fields refer to (for matched_channels)
    spatial_dims: int
    in_channels: int
    plain: Callable[[Sequence[int]], nn.Module]  # plain net from channels
    params_by_search: bool = False  # no |G|·C² parameter rule (steerable basis)
    twins: Callable[[], dict[str, tuple[tuple[int, ...], nn.Module]]] | None = None  # rows instead of the baselines
    size: int | None = None  # input side instead of --size2d/--size3d (nets with their own admissible sides)


def unet_plain(in_channels: int = 3, out_channels: int = 1) -> Callable[[Sequence[int]], nn.Module]:
    return lambda ch: GroupUNet(2, in_channels, out_channels, tuple(ch), group="trivial")


def cnn_plain(spatial_dims: int, in_channels: int, out_channels: int, **kwargs) -> Callable[[Sequence[int]], nn.Module]:
    return lambda ch: GroupCNN(spatial_dims, in_channels, out_channels, tuple(ch), group="trivial", **kwargs)


def unet_swap(tiny: bool = False) -> NetSpec:
    """MONAI's UNet, then P4UNet and P4MUNet with its arguments, read as fields, by parameters and by FLOPs."""
    from monai.networks.nets import UNet

    args = dict(spatial_dims=2, in_channels=3, out_channels=1, channels=(16, 32, 64, 128, 256),
                strides=(2, 2, 2, 2), num_res_units=2)
    if tiny:
        args.update(channels=(4, 8, 16), strides=(2, 2), num_res_units=1)

    def twins() -> dict[str, tuple[tuple[int, ...], nn.Module]]:
        rows = {}
        for cls in (P4UNet, P4MUNet):
            for reading in ("fields", "params", "flops"):
                net = cls(**args, channels_as=reading)
                rows[f"{cls.__name__}, channels_as={reading!r}"] = (net.channels, net)
        return rows

    return NetSpec("MONAI UNet", "trivial", lambda: UNet(**args), args["channels"], "trivial", 2, 3, unet_plain(),
                   twins=twins)


def resnet_swap(tiny: bool = False) -> NetSpec:
    """MONAI's 2D ResNet-10 layout, then GroupResNet (p4) with its arguments, read as fields, by params, by FLOPs."""
    from monai.networks.nets import ResNet

    from monai_equivariant.networks.nets import GroupResNet

    planes = (4, 8, 8, 16) if tiny else (16, 32, 64, 128)
    args = dict(spatial_dims=2, n_input_channels=3, num_classes=2)

    def twins() -> dict[str, tuple[tuple[int, ...], nn.Module]]:
        rows = {}
        for reading in ("fields", "params", "flops"):
            net = GroupResNet("basic", (1, 1, 1, 1), planes, **args, group="p4", channels_as=reading)
            rows[f"GroupResNet (p4), channels_as={reading!r}"] = (net.block_inplanes, net)
        return rows

    return NetSpec("MONAI ResNet", "trivial", lambda: ResNet("basic", [1, 1, 1, 1], list(planes), **args), planes,
                   "trivial", 2, 3, unet_plain(), twins=twins)


def basic_unet_swap(tiny: bool = False) -> NetSpec:
    """MONAI's BasicUNet, then GroupBasicUNet (p4) with its arguments, read as fields, by params, by FLOPs."""
    from monai.networks.nets import BasicUNet

    from monai_equivariant.networks.nets import GroupBasicUNet

    features = (4, 4, 8, 8, 16, 4) if tiny else (32, 32, 64, 128, 256, 32)
    args = dict(spatial_dims=2, in_channels=3, out_channels=1)

    def twins() -> dict[str, tuple[tuple[int, ...], nn.Module]]:
        nets = {reading: GroupBasicUNet(**args, features=features, channels_as=reading)
                for reading in ("fields", "params", "flops")}
        return {f"GroupBasicUNet (p4), channels_as={r!r}": (tuple(n.features), n) for r, n in nets.items()}

    return NetSpec("MONAI BasicUNet", "trivial", lambda: BasicUNet(**args, features=features), features, "trivial",
                   2, 3, unet_plain(), twins=twins)


def segresnet_swap(tiny: bool = False) -> NetSpec:
    """MONAI's SegResNet, then GroupSegResNet (p4) with its arguments, read as fields, by params, by FLOPs."""
    from monai.networks.nets import SegResNet

    from monai_equivariant.networks.nets import GroupSegResNet

    init = 4 if tiny else 8
    args = dict(spatial_dims=2, in_channels=3, out_channels=1)

    def twins() -> dict[str, tuple[tuple[int, ...], nn.Module]]:
        nets = {reading: GroupSegResNet(**args, init_filters=init, channels_as=reading)
                for reading in ("fields", "params", "flops")}
        return {f"GroupSegResNet (p4), channels_as={r!r}": ((n.init_filters,), n) for r, n in nets.items()}

    return NetSpec("MONAI SegResNet", "trivial", lambda: SegResNet(**args, init_filters=init), (init,), "trivial", 2,
                   3, unet_plain(), twins=twins)


def dynunet_swap(tiny: bool = False) -> NetSpec:
    """The nnU-Net plan (3D, anisotropic) without the group (``GroupDynUNet(group="trivial")``, MONAI DynUNet's layout at
    the twin's odd sides; MONAI's own takes other sides), then the D4h GroupDynUNet read as fields, by params (MONAI's
    DynUNet), by FLOPs; at 17³ (sides 1 + m·(2, 4, 4))."""
    from monai_equivariant.networks.nets import GroupDynUNet

    plan = dict(kernel_size=[[1, 3, 3], [1, 3, 3], [3, 3, 3]], strides=[[1, 1, 1], [1, 2, 2], [2, 2, 2]],
                upsample_kernel_size=[[1, 2, 2], [2, 2, 2]])
    filters = (4, 8, 16) if tiny else (16, 32, 64)
    args = dict(spatial_dims=3, in_channels=1, out_channels=2, **plan)

    def twins() -> dict[str, tuple[tuple[int, ...], nn.Module]]:
        nets = {reading: GroupDynUNet(**args, filters=filters, group="D4h", channels_as=reading)
                for reading in ("fields", "params", "flops")}
        return {f"GroupDynUNet (D4h), channels_as={r!r}": (n.filters, n) for r, n in nets.items()}

    return NetSpec("DynUNet plan, no group", "trivial", lambda: GroupDynUNet(**args, filters=filters, group="trivial"),
                   filters, "trivial", 3, 1, unet_plain(), twins=twins, size=9 if tiny else 17)


def steerable_unet(channels: Sequence[int]) -> nn.Module:
    from monai_equivariant.networks.nets import SteerableUNet

    return SteerableUNet(2, 3, 1, tuple(channels))


def specs(tiny: bool = False) -> list[NetSpec]:
    """The package's networks with their default arguments (in=3 for 2D, in=1 for 3D); ``tiny``: the same
    classes with 1–4 fields per level and 3 U-Net levels (for smoke tests)."""
    unet = {
        "P4UNet": (8, 16, 32, 64, 128),
        "P4MUNet": (6, 11, 23, 45, 91),
        "SE2UNet": (5, 9, 18, 37, 74),
        "SteerableUNet": (4, 8, 16, 32, 64),
    }
    cnn = {"SE2CNN": (8, 16, 32), "GroupCNN": (4, 8, 16)}
    if tiny:
        unet = {name: (1, 2, 4) for name in unet}
        cnn = {name: (1, 2) for name in cnn}
    cube = [
        NetSpec(
            f"GroupCNN ({g})", g, lambda g=g: GroupCNN(3, 1, 2, cnn["GroupCNN"], group=g), cnn["GroupCNN"], g, 3,
            1, cnn_plain(3, 1, 2),
        )
        for g in ("O", "Oh", "D4h")
    ]
    return [
        NetSpec("P4UNet", "p4", lambda: P4UNet(2, 3, 1, unet["P4UNet"]), unet["P4UNet"], "p4", 2, 3, unet_plain()),
        NetSpec(
            "P4MUNet", "p4m", lambda: P4MUNet(2, 3, 1, unet["P4MUNet"]), unet["P4MUNet"], "p4m", 2, 3, unet_plain()
        ),
        NetSpec(
            "SE2UNet", "se2_12", lambda: SE2UNet(2, 3, 1, unet["SE2UNet"]), unet["SE2UNet"], "se2_12", 2, 3,
            unet_plain(),
        ),
        NetSpec(
            "SteerableUNet", "C8 (escnn)", lambda: steerable_unet(unet["SteerableUNet"]), unet["SteerableUNet"],
            "se2_8", 2, 3, unet_plain(), params_by_search=True,
        ),
        NetSpec(
            "SE2CNN", "se2_8", lambda: SE2CNN(2, 3, 2, channels=cnn["SE2CNN"]), cnn["SE2CNN"], "se2_8", 2, 3,
            cnn_plain(2, 3, 2, kernel_size=5),
        ),
        *cube,
        unet_swap(tiny),
        resnet_swap(tiny),
        basic_unet_swap(tiny),
        segresnet_swap(tiny),
        dynunet_swap(tiny),
    ]


def plain_baselines(spec: NetSpec, target_params: int) -> dict[str, tuple[tuple[int, ...], nn.Module]]:
    """{"plain, equal params": (channels, net), "plain, equal FLOPs": (channels, net)}."""
    dims = spec.spatial_dims
    by_flops = matched_channels(spec.fields, spec.group, "trivial", dims, by="flops")
    if spec.params_by_search:
        by_params = _search_equal_params(spec.plain, by_flops, target_params)
    else:
        by_params = matched_channels(spec.fields, spec.group, "trivial", dims, by="params")
    return {
        "plain, equal params": (by_params, spec.plain(by_params)),
        "plain, equal FLOPs": (by_flops, spec.plain(by_flops)),
    }


def _search_equal_params(
    plain: Callable[[Sequence[int]], nn.Module], channels: Sequence[int], target: int
) -> tuple[int, ...]:
    """Channels ``round(c·s)`` whose plain net has the parameter count closest to ``target``."""
    full = count_parameters(plain(channels))
    guess = math.sqrt(target / full)  # parameters grow ~ quadratically with width
    best: tuple[int, tuple[int, ...]] | None = None
    for s in (guess * f for f in (0.94, 0.97, 1.0, 1.03, 1.06)):
        candidate = tuple(max(1, round(c * s)) for c in channels)
        gap = abs(count_parameters(plain(candidate)) - target)
        if best is None or gap < best[0]:
            best = (gap, candidate)
    return best[1]


# ------------------------------------------------------------------------------------------------- measures
def forward_gflops(net: nn.Module, x: torch.Tensor) -> float:
    """GFLOPs of one eval forward of ``x`` (batch 1) with the filter caches already filled."""
    net.eval()
    with torch.no_grad():
        net(x)
        with FlopCounterMode(display=False) as counter:
            net(x)
    return counter.get_total_flops() / 1e9 / x.shape[0]


def activation_mib(net: nn.Module, x: torch.Tensor) -> float:
    """MiB of the distinct tensors one training forward saves for backward (parameters excluded)."""
    net.train()
    parameters = {p.untyped_storage().data_ptr() for p in net.parameters()}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in parameters:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = net(x).float().mean()
    loss.backward()
    net.zero_grad(set_to_none=True)
    return sum(saved.values()) / 2**20


def train_step_fn(net: nn.Module, x: torch.Tensor, device: str) -> Callable[[], None]:
    """One SGD training step on a fixed batch (mean of the output as the loss)."""
    optimizer = torch.optim.SGD(net.parameters(), lr=1e-6)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        net(x).float().mean().backward()
        optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()

    return step


def interleaved_ms(fns: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """Median ms per call, the calls timed round by round so load on the machine hits all alike."""
    samples = interleaved_times(fns, repeats, warmup=1)
    return {name: statistics.median(times) * 1e3 for name, times in samples.items()}


def measure(spec: NetSpec, size: int, batch: int, repeats: int, device: str) -> list[dict]:
    """Rows for the net and its two plain baselines."""
    torch.manual_seed(0)
    net = spec.build()
    n_params = count_parameters(net)
    nets = {spec.name: (spec.fields, net), **(spec.twins() if spec.twins else plain_baselines(spec, n_params))}

    def group_of(label: str, model: nn.Module) -> str:
        return spec.group_label if label == spec.name else _group_name(model) if spec.twins else "trivial"

    return measured_rows(nets, spec, size, batch, repeats, device, group_of)


def measured_rows(nets: dict[str, tuple[Sequence[int], nn.Module]], spec: NetSpec, size: int, batch: int,
                  repeats: int, device: str, group_of: Callable[[str, nn.Module], str]) -> list[dict]:
    """One row per net of ``nets`` (label -> (channels, net)): params, GFLOPs, activation memory, train ms per step
    (timed round by round) and ``vs_first`` (params and FLOPs over the first row's)."""
    shape = (spec.in_channels,) + (size,) * spec.spatial_dims
    x1 = torch.randn((1,) + shape, device=device)
    xb = torch.randn((batch,) + shape, device=device)
    rows, steps = [], {}
    for label, (channels, model) in nets.items():
        model.to(device)
        rows.append(
            dict(
                net=label,
                group=group_of(label, model),
                channels=tuple(channels),
                params=count_parameters(model),
                gflops=forward_gflops(model, x1),
                act_mib=activation_mib(model, xb),
            )
        )
        model.train()
        steps[label] = train_step_fn(model, xb, device)
    times = interleaved_ms(steps, repeats)
    for row in rows:
        row["train_ms"] = times[row["net"]]
        row["vs_first"] = (row["params"] / rows[0]["params"], row["gflops"] / rows[0]["gflops"])
    return rows


def _group_name(net: nn.Module) -> str:
    group = getattr(net, "group", None)
    return "trivial" if group is None else group.name


def markdown(rows: list[dict], batch: int) -> str:
    lines = [
        f"| net | group | channels (fields) | params | GFLOPs/image | × first row (params, FLOPs) | train ms/step | "
        f"activation MiB (batch {batch}) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        name = f"↳ {r['net']}" if r["vs_first"] != (1.0, 1.0) or r["net"].startswith("plain") else r["net"]
        channels = ", ".join(str(c) for c in r["channels"])
        lines.append(
            f"| {name} | {r['group']} | ({channels}) | {r['params']:,} | {r['gflops']:.3f} | "
            f"{r['vs_first'][0]:.2f}×, {r['vs_first'][1]:.2f}× | {r['train_ms']:.1f} | {r['act_mib']:.1f} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size2d", type=int, default=64, help="2D image side (multiple of 16)")
    parser.add_argument("--size3d", type=int, default=16, help="3D volume side (multiple of 4)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved timing rounds")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--only", nargs="+", default=None, help="net names (e.g. P4UNet 'GroupCNN (O)')")
    parser.add_argument(
        "--smoke", action="store_true", help="tiny nets (1-4 fields), 16² / 8³ inputs, 1 round (tests)"
    )
    parser.add_argument("--separable", action="store_true",
                        help="the separable nets next to their full group twins and plain nets (separable_main)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.size2d, args.size3d, args.repeats = 16, 8, 1
    return args


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.separable:
        return separable_main(args)
    start = time.perf_counter()
    wanted = lambda spec: args.only is None or spec.name in args.only or spec.group_label in args.only  # noqa: E731
    chosen = [spec for spec in specs(tiny=args.smoke) if wanted(spec)]
    if not chosen:
        raise SystemExit(f"--only matched no network; names: {[s.name for s in specs()]}")
    rows = []
    for spec in chosen:
        size = spec.size or (args.size2d if spec.spatial_dims == 2 else args.size3d)
        rows.extend(measure(spec, size, args.batch, args.repeats, args.device))
        print(f"  {spec.name}: done ({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
    print(
        f"device={args.device} torch={torch.__version__} threads={args.threads} batch={args.batch} "
        f"repeats={args.repeats}; 2D nets at {args.size2d}², 3D nets at {args.size3d}³\n"
    )
    print(markdown(rows, args.batch))
    print(f"\nwall time {time.perf_counter() - start:.0f} s")
    return rows


# ------------------------------------------------------------------------------------------ separable section
SEPARABLE_NETS = ("P4UNet", "P4MUNet", "SE2UNet", "GroupCNN (O)", "GroupCNN (Oh)", "GroupCNN (D4h)")
"""The nets of :func:`specs` that have a ``separable`` option (GroupUNet's presets and GroupCNN; SteerableUNet and
SE2CNN's kernel-5 default are left out)."""

_RATIO_KEYS = ("params", "gflops", "train_ms", "act_mib")


def separable_measure(spec: NetSpec, size: int, batch: int, repeats: int, device: str) -> list[dict]:
    """Rows for ``spec``'s net with ``separable=True``, its full twin (same fields) and the plain net of the full
    twin's parameters, timed round by round; the separable row also holds its ratios to the other two
    (``ratio_full``, ``ratio_plain``: {measure: separable / other})."""
    torch.manual_seed(0)
    full = spec.build()
    separable = _with_separable(spec)
    by_params = plain_baselines(spec, count_parameters(full))["plain, equal params"]
    nets = {f"{spec.name} separable": (spec.fields, separable), spec.name: (spec.fields, full),
            "plain, equal params": by_params}
    rows = measured_rows(nets, spec, size, batch, repeats, device,
                         lambda label, model: "trivial" if label.startswith("plain") else spec.group_label)
    head, full_row, plain_row = rows
    head["ratio_full"] = {key: head[key] / full_row[key] for key in _RATIO_KEYS}
    head["ratio_plain"] = {key: head[key] / plain_row[key] for key in _RATIO_KEYS}
    return rows


def _with_separable(spec: NetSpec) -> nn.Module:
    """``spec``'s net built again with ``separable=True`` (same class, fields and arguments)."""
    net = spec.build()
    if isinstance(net, GroupCNN):
        return GroupCNN(net.spatial_dims, net.in_channels, net.out_channels, spec.fields, group=net.group,
                        kernel_size=net.kernel_size, separable=True)
    return GroupUNet(net.spatial_dims, net.in_channels, net.out_channels, spec.fields, group=net.group,
                     kernel_size=net.kernel_size, separable=True)


def separable_markdown(rows: list[dict], batch: int) -> str:
    """The measures of every net, then the separable nets' ratios to their full twins and plain nets."""
    lines = [markdown(rows, batch), "",
             "| separable net | params ×full / ×plain | GFLOPs ×full / ×plain | train step ×full / ×plain | "
             "activation ×full / ×plain |", "|---|---|---|---|---|"]
    for r in rows:
        if "ratio_full" in r:
            cells = [f"{r['ratio_full'][k]:.2f} / {r['ratio_plain'][k]:.2f}" for k in _RATIO_KEYS]
            lines.append(f"| {r['net']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def separable_main(args: argparse.Namespace) -> list[dict]:
    """The separable section (``--separable``), for the nets of :data:`SEPARABLE_NETS` (``--only`` filters)."""
    start = time.perf_counter()
    chosen = [spec for spec in specs(tiny=args.smoke) if spec.name in SEPARABLE_NETS
              and (args.only is None or spec.name in args.only or spec.group_label in args.only)]
    if not chosen:
        raise SystemExit(f"--only matched no network with a separable option; names: {list(SEPARABLE_NETS)}")
    rows = []
    for spec in chosen:
        size = spec.size or (args.size2d if spec.spatial_dims == 2 else args.size3d)
        rows.extend(separable_measure(spec, size, args.batch, args.repeats, args.device))
        print(f"  {spec.name} separable: done ({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
    print(f"device={args.device} torch={torch.__version__} threads={args.threads} batch={args.batch} "
          f"repeats={args.repeats}; 2D nets at {args.size2d}², 3D nets at {args.size3d}³\n")
    print(separable_markdown(rows, args.batch))
    print(f"\nwall time {time.perf_counter() - start:.0f} s")
    return rows


if __name__ == "__main__":
    main()
