"""Which channels a group keeps: one contract for every criterion (`ChannelCriterion.select`).

A criterion reads `ChannelEvidence` (gathered once per job from calibration batches at the dense weights: each
group's feature maps, the loss gradient, Torch-Pruning's groups) and returns, for group i and a keep count, the
indices kept. Scored criteria keep the `keep` highest scores of a group; `SegmentedChannels` is SGLP on channels:
it segments the group's channels by similarity first and keeps a share of every segment.

Baselines: Torch-Pruning's importances where it has them (`TorchPruningImportance`: L1 = PFEC, FPGM, Taylor,
random), and one class each for HRank (Lin et al. 2020: average rank of a channel's feature maps) and CHIP (Sui et
al. 2021: channel independence, the drop of the feature matrix's nuclear norm when the channel is zeroed).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sglp.core.errors import InvalidArgument
from sglp.core.segmentation import REPRESENTATIONS, fisher_segments
from sglp.core.similarity import cka_from_hsic, transformed_gram
from sglp.methods.channels.groups import ChannelGroup, keep_counts_by_share, root_group


class ChannelEvidence:
    """What the criteria read, gathered once at the dense weights (before any channel is removed).

    features[i]: (N, C_i, H, W) float32, group i's feature maps after its BatchNorm and a ReLU, on the calibration
    images (only when a criterion needs them); the loss gradient sits in the model's `.grad` (when needed) until
    `release()`. `notes[i]`: what a criterion records about group i (SGLP: its segment sizes)."""

    def __init__(self, model: nn.Module, graph, groups: Sequence[ChannelGroup], batches: list, needs: set[str]) -> None:
        self.model, self.graph, self.groups = model, graph, list(groups)
        self.modules = dict(model.named_modules())
        self.features: list[torch.Tensor] = []
        self.notes: dict[int, dict] = {}
        if not batches:
            raise InvalidArgument("channel pruning needs at least one calibration batch")
        was_training = model.training
        model.eval()
        try:
            if "features" in needs:
                self.features = self._feature_maps(batches)
            if "grads" in needs:
                model.zero_grad(set_to_none=True)
                for x, y in batches:  # the mean loss of each batch, summed over batches
                    F.cross_entropy(model(x), y).backward()
        finally:
            model.train(was_training)

    def _feature_maps(self, batches: list) -> list[torch.Tensor]:
        store: list[list[torch.Tensor]] = [[] for _ in self.groups]
        hooks = []
        for i, g in enumerate(self.groups):
            at = g.outputs[-1]  # the group's BatchNorm when it has one, else its conv

            def hook(module, inputs, output, i=i) -> None:
                store[i].append(F.relu(output.detach()).float().cpu())

            hooks.append(self.modules[at].register_forward_hook(hook))
        try:
            with torch.no_grad():
                for x, _ in batches:
                    self.model(x)
        finally:
            for h in hooks:
                h.remove()
        return [torch.cat(s) for s in store]

    def root(self, i: int) -> nn.Conv2d:
        return self.modules[self.groups[i].name]

    def group(self, i: int):
        """Torch-Pruning's group of every output channel of group i."""
        return root_group(self.graph, self.root(i))

    def release(self) -> None:
        self.model.zero_grad(set_to_none=True)
        self.features = []


class ChannelCriterion(ABC):
    """`select(evidence, i, keep)` -> the sorted channel indices group i keeps (`keep` of them); `needs`: what
    ChannelEvidence must gather ("features", "grads")."""

    needs: frozenset[str] = frozenset()

    @abstractmethod
    def select(self, evidence: ChannelEvidence, i: int, keep: int) -> list[int]: ...

    def describe(self) -> dict:
        return {}


class ScoredCriterion(ChannelCriterion):
    """Keep the `keep` channels of highest score (ties: the lower index)."""

    @abstractmethod
    def scores(self, evidence: ChannelEvidence, i: int) -> torch.Tensor:
        """(C_i,) one score per output channel of group i; higher = more worth keeping."""

    def select(self, evidence: ChannelEvidence, i: int, keep: int) -> list[int]:
        return top_channels(self.scores(evidence, i), range(evidence.groups[i].width), keep)


def top_channels(scores: torch.Tensor, among: Sequence[int], keep: int) -> list[int]:
    """The `keep` indices of `among` with the highest scores (stable: ties go to the earlier index), sorted."""
    among = list(among)
    s = scores.detach().double().cpu()[among]
    order = torch.argsort(-s, stable=True)[:keep]
    return sorted(among[int(j)] for j in order)


class TorchPruningImportance(ScoredCriterion):
    """A Torch-Pruning importance (`torch_pruning.importance.*`, built from its yaml) on the group's channels.
    Gradient-based ones (Taylor) set `needs_grads`."""

    def __init__(self, importance, needs_grads: bool = False) -> None:
        self.importance, self.needs = importance, frozenset({"grads"} if needs_grads else ())

    def scores(self, evidence: ChannelEvidence, i: int) -> torch.Tensor:
        s = self.importance(evidence.group(i))
        if s is None:
            raise InvalidArgument(f"{type(self.importance).__name__} scores nothing in group {evidence.groups[i].name}")
        return s

    def describe(self) -> dict:
        return {"importance": type(self.importance).__name__}


class HRank(ScoredCriterion):
    """Average rank of each channel's (H, W) feature map over the calibration images (Lin et al. 2020)."""

    needs = frozenset({"features"})

    def scores(self, evidence: ChannelEvidence, i: int) -> torch.Tensor:
        return torch.linalg.matrix_rank(evidence.features[i]).double().mean(0)


class CHIP(ScoredCriterion):
    """Channel independence (Sui et al. 2021): per image, the nuclear norm of the (C, HW) feature matrix minus
    that with channel c zeroed, averaged over at most `max_images` calibration images."""

    needs = frozenset({"features"})

    def __init__(self, max_images: int = 32) -> None:
        if max_images < 1:
            raise InvalidArgument(f"CHIP: max_images must be >= 1, got {max_images}")
        self.max_images = max_images

    def scores(self, evidence: ChannelEvidence, i: int) -> torch.Tensor:
        return channel_independence(evidence.features[i][: self.max_images])


def channel_independence(features: torch.Tensor) -> torch.Tensor:
    """(C,) CHIP's channel independence, averaged over images. features: (N, C, H, W).

    ||A||_* = sum_j sqrt(lambda_j(A A^T)) = sum_j sqrt(lambda_j(A^T A)). Zeroing row a_c of A deletes row and column
    c of A A^T and subtracts a_c a_c^T from A^T A, so each channel costs one symmetric eigenvalue problem of size
    min(C - 1, H*W) instead of an SVD of a (C, H*W) matrix."""
    n, c = features.shape[:2]
    m = features.double().reshape(n, c, -1)
    hw = m.shape[2]
    nuclear = lambda g: torch.linalg.eigvalsh(g).clamp_min(0).sqrt().sum(-1)  # noqa: E731
    if c == 1:
        return nuclear(m @ m.transpose(1, 2)).mean(0, keepdim=True)
    others = torch.tensor([[j for j in range(c) if j != k] for k in range(c)])  # (C, C-1)
    ci = torch.zeros(c, dtype=torch.float64)
    for a in m:  # one image: a is (C, HW)
        if hw < c - 1:  # the small side: (HW, HW) minus each channel's outer product
            gram = a.T @ a
            minors = gram[None] - a[:, :, None] * a[:, None, :]  # (C, HW, HW)
        else:  # (C-1, C-1) principal minors of the channel Gram
            gram = a @ a.T
            minors = gram[others[:, :, None], others[:, None, :]]
        ci += nuclear(gram) - nuclear(minors)
    return ci / n


class ChannelGradNorm(ScoredCriterion):
    """||dL/dW_c||_2 of each output filter of the group's root conv on the calibration batches (GradNorm at the
    level of a channel: ours, the paper scores layer subsets, not channels)."""

    needs = frozenset({"grads"})

    def scores(self, evidence: ChannelEvidence, i: int) -> torch.Tensor:
        grad = evidence.root(i).weight.grad
        if grad is None:
            raise InvalidArgument(f"no gradient reached {evidence.groups[i].name}: is it used in the forward pass?")
        return grad.detach().flatten(1).norm(dim=1)


class RandomScores(ScoredCriterion):
    """Uniform random scores (torch's global generator, seeded by the job): the control inside SGLP's segments."""

    def scores(self, evidence: ChannelEvidence, i: int) -> torch.Tensor:
        return torch.rand(evidence.groups[i].width)


def channel_cka(features: torch.Tensor, estimator: str = "biased") -> torch.Tensor:
    """(C, C) linear CKA between channels: channel c's representation is its (N, H*W) feature maps.
    features: (N, C, H, W). One transformed Gram per channel, then all pairs as one matrix product."""
    n, c = features.shape[:2]
    grams, norm = [], 1.0
    for ch in range(c):
        g, norm = transformed_gram(features[:, ch].reshape(n, -1).double(), estimator)
        grams.append(g)
    t = torch.stack(grams)  # (C, N^2)
    return cka_from_hsic(t @ t.T / norm)


def spectral_order(similarity: torch.Tensor) -> list[int]:
    """Channels ordered by the Fiedler vector of the similarity's graph Laplacian (spectral seriation, Atkins et al.
    1998): similar channels end up next to each other, so contiguous segments group them. Sign fixed so that the
    largest-magnitude entry is positive (deterministic)."""
    s = similarity.double().clamp_min(0)
    s = (s + s.T) / 2
    lap = torch.diag(s.sum(1)) - s
    _, vecs = torch.linalg.eigh(lap)
    v = vecs[:, 1] if s.shape[0] > 1 else vecs[:, 0]
    if v[v.abs().argmax()] < 0:
        v = -v
    return [int(j) for j in torch.argsort(v, stable=True)]


ORDERS = ("spectral", "index")
QUOTAS = ("share", "equal")


class SegmentedChannels(ChannelCriterion):
    """SGLP on channels (our reading of the paper's one sentence, experiments/sglp_table8/README.md): per group,
    channel x channel linear CKA of the feature maps -> an order (`spectral` seriation, or the channels' `index`)
    -> Fisher optimal segmentation of that order into `k` contiguous segments -> a keep count per segment (`share`:
    in proportion to its size; `equal`: the same from each) -> inside each segment the highest scores of `within`
    (channel GradNorm by default; `RandomScores` gives the matched control: same segments, same counts)."""

    def __init__(self, within: ScoredCriterion, k: int = 4, order: str = "spectral", quota: str = "share",
                 estimator: str = "biased", representation: str = "row_sum") -> None:  # fmt: skip
        if not isinstance(k, int) or k < 1:
            raise InvalidArgument(f"channel segments: k must be an integer >= 1, got {k!r}")
        for name, value, allowed in (("order", order, ORDERS), ("quota", quota, QUOTAS),
                                     ("representation", representation, REPRESENTATIONS),
                                     ("estimator", estimator, ("biased", "unbiased"))):  # fmt: skip
            if value not in allowed:
                raise InvalidArgument(f"channel segments: {name}={value!r}: choose one of {', '.join(allowed)}")
        self.within, self.k, self.order, self.quota = within, k, order, quota
        self.estimator, self.representation = estimator, representation
        self.needs = frozenset({"features"}) | within.needs

    def segments(self, evidence: ChannelEvidence, i: int) -> list[list[int]]:
        """Group i's channels in segments (channel indices, each segment contiguous in the chosen order)."""
        sim = channel_cka(evidence.features[i], self.estimator)
        order = spectral_order(sim) if self.order == "spectral" else list(range(sim.shape[0]))
        permuted = sim[order][:, order]
        k = min(self.k, len(order))
        return [[order[j] for j in seg] for seg in fisher_segments(permuted, k, self.representation)]

    def select(self, evidence: ChannelEvidence, i: int, keep: int) -> list[int]:
        segs = self.segments(evidence, i)
        sizes = [len(s) for s in segs]
        counts = keep_counts_by_share(sizes, keep) if self.quota == "share" else equal_counts(sizes, keep)
        scores = self.within.scores(evidence, i)
        evidence.notes[i] = {"segment_sizes": sizes, "segment_keep": counts}
        return sorted(j for seg, n in zip(segs, counts, strict=True) for j in top_channels(scores, seg, n))

    def describe(self) -> dict:
        return {"channel_k": self.k, "channel_order": self.order, "channel_quota": self.quota,
                "cka_estimator": self.estimator, "within": type(self.within).__name__}  # fmt: skip


def equal_counts(sizes: Sequence[int], keep: int) -> list[int]:
    """`keep` split as evenly as the segments' sizes allow (earlier segments take the remainder first)."""
    if not 0 < keep <= sum(sizes):
        raise InvalidArgument(f"cannot keep {keep} of {sum(sizes)} channels")
    counts = [0] * len(sizes)
    while sum(counts) < keep:
        for j in range(len(sizes)):
            if sum(counts) < keep and counts[j] < sizes[j]:
                counts[j] += 1
    return counts
