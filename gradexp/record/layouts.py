"""Custom-scalar layouts: related curves in one chart, built from the tags a run actually wrote."""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
from tensorboard.compat.proto.tensor_pb2 import TensorProto
from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto
from tensorboard.plugins.custom_scalar import layout_pb2, metadata

# (category, chart title, what): a tuple of tag regexes is a Multiline chart, one line per matching
# (run, tag); a single tag is a Margin chart, its interval mean inside the band of its _min/_max.
# TensorBoard matches chart regexes from the start of the tag (re.match), so `$` ends them.
# No title or regex names a run's own tags (layer names), so the layouts of the runs of a sweep
# agree chart for chart and TensorBoard merges them into one.
CHARTS = (
    ("loss", "train and eval loss (x = step)", (r"train/loss$", r"eval/loss$")),
    ("loss", "train loss: interval mean within its min/max", "train/loss"),
    ("loss", "train and eval loss per epoch (x = epoch)",
     (r"epoch/train_loss$", r"epoch/eval_loss$")),
    ("loss", "eval accuracy", (r"eval/accuracy$",)),
    ("loss", "L2 penalty λ‖θ‖²", (r"train/l2$",)),
    ("gradients", "gradient norm ‖∇J‖, global and per layer", (r"grad/norm$", r"grad_norm/.*")),
    ("gradients", "‖∇J‖: interval mean within its min/max", "grad/norm"),
    ("gradients", "‖∇J‖ per epoch (x = epoch)", (r"epoch/grad_norm$",)),
    ("optimizer", "learning rate η", (r"train/lr$",)),
    ("optimizer", "parameter norm ‖θ‖", (r"param/norm$",)),
    ("optimizer", "update norm ‖Δθ‖", (r"update/norm$",)),
    ("optimizer", "relative update ‖Δθ‖/‖θ‖", (r"update/ratio$",)),
    ("curvature", "sharpness λ_max beside the 2/η stability line",
     (r"curvature/sharpness$", r"curvature/threshold$")),
    ("gradient noise", "gradient noise", (r"noise/.*",)),
    ("gradient checks", "gradient checks", (r"gradcheck/.*",)),
    ("taylor", "actual loss change and its Taylor approximations",
     (r"taylor/actual$", r"taylor/first_order$", r"taylor/second_order$")),
)  # fmt: skip

# function/grad_<method>/<variable>: one chart per variable, the three methods side by side.
FUNCTION_GRAD = re.compile(r"function/grad_(autograd|symbolic|fd)/(.+)")
METHODS = ("autograd", "symbolic", "fd")


def build(tags: Iterable[str]) -> layout_pb2.Layout:
    """The layout for a run that wrote `tags`: a chart only where its tags exist."""
    tags = set(tags)
    charts: dict[str, list[layout_pb2.Chart]] = {}
    for category, title, what in CHARTS:
        chart = _margin(title, what, tags) if isinstance(what, str) else _lines(title, what, tags)
        if chart is not None:
            charts.setdefault(category, []).append(chart)
    for var in sorted({m[2] for t in tags if (m := FUNCTION_GRAD.fullmatch(t))}):
        patterns = [rf"function/grad_{m}/{re.escape(var)}$" for m in METHODS]
        title = f"∂f/∂{var}: autograd, symbolic and finite differences"
        charts.setdefault("function gradients", []).append(_lines(title, patterns, tags))
    return layout_pb2.Layout(
        category=[layout_pb2.Category(title=c, chart=cs) for c, cs in charts.items()]
    )


def _lines(title: str, patterns, tags: set[str]) -> layout_pb2.Chart | None:
    if not any(re.match(p, t) for p in patterns for t in tags):
        return None
    return layout_pb2.Chart(title=title, multiline=layout_pb2.MultilineChartContent(tag=patterns))


def _margin(title: str, value: str, tags: set[str]) -> layout_pb2.Chart | None:
    # History writes _min/_max only for intervals of more than one step: log_every=1 has none.
    lower, upper = f"{value}_min", f"{value}_max"
    if not {value, lower, upper} <= tags:
        return None
    series = layout_pb2.MarginChartContent.Series(value=value, lower=lower, upper=upper)
    return layout_pb2.Chart(title=title, margin=layout_pb2.MarginChartContent(series=[series]))


@lru_cache(maxsize=64)
def for_tags(tags: frozenset[str]) -> Summary:
    """summary(build(tags)), built once per tag set: every member of a group, and every job of
    a sweep, writes the same layout (not to be modified by the caller)."""
    return summary(build(tags))


def summary(layout: layout_pb2.Layout) -> Summary:
    """The event TensorBoard's custom_scalars plugin reads the layout from."""
    tensor = TensorProto(
        dtype="DT_STRING",
        string_val=[layout.SerializeToString()],
        tensor_shape=TensorShapeProto(),
    )
    meta = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name=metadata.PLUGIN_NAME))
    return Summary(
        value=[Summary.Value(tag=metadata.CONFIG_SUMMARY_TAG, tensor=tensor, metadata=meta)]
    )
