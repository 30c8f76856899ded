"""Structured pruning by dependency group (the only importer of torch-pruning).

A dependency group is a set of Conv/Linear layers whose channels must be removed together
(e.g. convs joined by a residual add). It is named by its root module (design decision 2).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch_pruning as tp
from torch import nn

from ..core.errors import CompressionError
from ..core.model_info import GroupInfo
from ..core.plan import kept_channels

# a channel multiple for every group, or one from the layers producing the group's channels
ChannelMultiple = int | Callable[[Sequence[str]], int]

ROOT_TYPES = (nn.Conv2d, nn.Linear)
IMPORTANCES = ("magnitude", "l1", "random")


@dataclass
class PruneReport:
    """What pruning did: channels before/after per group, and groups left unpruned with why."""

    channels: dict[str, tuple[int, int]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def execution_order(model: nn.Module, example: torch.Tensor) -> list[str]:
    """Names of Conv2d/Linear modules in the order a forward pass calls them."""
    order: list[str] = []
    hooks = [
        module.register_forward_hook(lambda _m, _i, _o, name=name: order.append(name))
        for name, module in model.named_modules()
        if isinstance(module, ROOT_TYPES)
    ]
    try:
        with torch.no_grad():
            model.eval()(example)
    finally:
        for hook in hooks:
            hook.remove()
    return list(dict.fromkeys(order))


def classifier_name(model: nn.Module, example: torch.Tensor) -> str | None:
    """The last Conv/Linear layer run in a forward pass: the classifier, never pruned."""
    order = execution_order(model, example)
    return order[-1] if order else None


def _graph(model: nn.Module, example: torch.Tensor) -> tp.DependencyGraph:
    model.eval()
    try:
        return tp.DependencyGraph().build_dependency(model, example_inputs=example)
    except Exception as exc:  # torch-pruning raises plain exceptions on untraceable models
        raise CompressionError(
            f"prune: could not trace the model's dependency graph ({type(exc).__name__}: {exc}); "
            "the model must run with a single tensor input"
        ) from exc


def _roots(model: nn.Module, graph: tp.DependencyGraph, ignored: Sequence[nn.Module]):
    names = {module: name for name, module in model.named_modules()}
    for group in graph.get_all_groups(ignored_layers=list(ignored), root_module_types=ROOT_TYPES):
        root = group[0].dep.target.module
        members = []
        for item in group:
            dep = item.dep
            module = dep.target.module
            if (
                module is not root
                and isinstance(module, ROOT_TYPES)
                and graph.is_out_channel_pruning_fn(dep.handler)
            ):
                members.append(names[module])
        yield names[root], root, tuple(sorted(set(members)))


def _out_channels(module: nn.Conv2d | nn.Linear) -> int:  # one of ROOT_TYPES
    return module.out_channels if isinstance(module, nn.Conv2d) else module.out_features


def _ignored(
    model: nn.Module, example: torch.Tensor, classifier: str | None = None
) -> list[nn.Module]:
    name = classifier or classifier_name(model, example)
    return [model.get_submodule(name)] if name else []


def dependency_groups(
    model: nn.Module, example: torch.Tensor, *, classifier: str | None = None
) -> tuple[GroupInfo, ...]:
    """The prunable dependency groups of ``model`` (the classifier's outputs excluded).

    ``classifier`` saves a forward pass when the caller already knows it.
    """
    graph = _graph(model, example)
    return tuple(
        GroupInfo(name=name, channels=_out_channels(root), members=members)
        for name, root, members in _roots(model, graph, _ignored(model, example, classifier))
    )


def _importance(name: str):
    if name in ("magnitude", "l2"):
        return tp.importance.GroupMagnitudeImportance(p=2)
    if name == "l1":
        return tp.importance.GroupMagnitudeImportance(p=1)
    if name == "random":
        return tp.importance.RandomImportance()
    raise CompressionError(f"prune.importance: {name!r} is unknown; use one of {IMPORTANCES}")


def _prune_once(
    model: nn.Module,
    example: torch.Tensor,
    ratios: Mapping[str, float],
    round_to: ChannelMultiple,
    importance: str,
    report: PruneReport,
) -> None:
    graph = _graph(model, example)
    scorer = _importance(importance)
    roots = list(_roots(model, graph, _ignored(model, example)))
    _check_names(ratios, [name for name, _, _ in roots])
    for name, root, members in roots:
        ratio = ratios.get(name, 0.0)
        before = _out_channels(root)
        multiple = round_to((name, *members)) if callable(round_to) else round_to
        after = kept_channels(before, ratio, multiple)
        if after >= before:
            continue
        pruner = graph.get_pruner_of_module(root)
        group = graph.get_pruning_group(root, pruner.prune_out_channels, list(range(before)))
        scores = scorer(group)
        if scores is None:
            report.skipped[name] = "torch-pruning gave no importance for this group"
            continue
        drop = torch.argsort(scores)[: before - after].tolist()
        graph.get_pruning_group(root, pruner.prune_out_channels, drop).prune()
        report.channels[name] = (before, _out_channels(root))


def _check_names(ratios: Mapping[str, float], groups: Sequence[str]) -> None:
    unknown = set(ratios) - set(groups)
    if unknown:
        raise CompressionError(f"prune: {sorted(unknown)[0]!r} is not a prunable group")


def _forward_ok(model: nn.Module, example: torch.Tensor) -> str | None:
    try:
        with torch.no_grad():
            model.eval()(example)
    except Exception as exc:  # any failure means the pruned model is broken
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    return None


def prune(
    model: nn.Module,
    example: torch.Tensor,
    ratios: Mapping[str, float],
    *,
    round_to: ChannelMultiple = 8,
    importance: str = "magnitude",
) -> tuple[nn.Module, PruneReport]:
    """Remove channels group by group; returns the pruned model (a new object) and a report.

    Kept channels are a multiple of ``round_to``: one for every group, or a function of the
    layers that produce a group's channels (its root and coupled members), e.g.
    ``Plan.multiple_of`` for one multiple per precision.

    After pruning, a forward pass checks the model. If it fails (an op the dependency graph
    cannot see couples channels), every group is retried alone; a group that breaks the model
    is left unpruned and named in ``report.skipped``. This never raises for such a group.
    """
    _importance(importance)  # a bad name is the caller's error, not a broken group
    if not any(r > 0 for r in ratios.values()):
        if ratios:  # nothing to prune, but the names must still exist
            _check_names(ratios, [g.name for g in dependency_groups(model, example)])
        return copy.deepcopy(model), PruneReport()
    candidate = copy.deepcopy(model)
    report = PruneReport()
    failure = None
    try:
        # One graph serves both the name check and the pruning.
        _prune_once(candidate, example, ratios, round_to, importance, report)
        failure = _forward_ok(candidate, example)
    except CompressionError:
        raise  # unknown group names or an untraceable model: not a broken group
    except Exception as exc:
        failure = f"{type(exc).__name__}: {exc}"
    if failure is None:
        return candidate, report
    # Slow path: find the groups that break the model, one at a time.
    current = copy.deepcopy(model)
    report = PruneReport()
    for name, ratio in ratios.items():
        if ratio <= 0:
            continue
        trial = copy.deepcopy(current)
        single = PruneReport()
        try:
            _prune_once(trial, example, {name: ratio}, round_to, importance, single)
            reason = _forward_ok(trial, example)
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
        if reason is None:
            current = trial
            report.channels.update(single.channels)
        else:
            report.skipped[name] = reason
    return current, report
