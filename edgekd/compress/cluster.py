"""Weight clustering: each Conv1D, LSTM and Dense kernel keeps only K distinct values, fine-tuned with the KD loss.

Pruning zeros half the weights, but the other half stay as varied as before, and gzip gains little on them
(RESULTS.md, FRONTIER: at 50% zeros the int8 weights gzip to 69-74% of the dense ones). Sharing K centroids per kernel
is what
makes the stored bytes repetitive. After pruning, tfmot's sparsity-preserving clustering keeps the zeros as a
cluster of their own, so both savings add up.

tfmot's own caveats, handled here:
- `cluster_weights` wraps the very layers it is given: it gets a clone, as in prune.py.
- Per-channel int8 quantization gives every output channel its own scale, which turns K shared values into K
  per channel and undoes most of the saving (tfmot's clustering guide says so). A clustered model is therefore
  converted with one scale per tensor (export/convert.py), where K centroids stay K int8 values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgekd._tf import keras
from edgekd.compress.finetune import DistillationData, clone_with_weights, finetune
from edgekd.compress.prune import kernel_variables

_CLUSTERABLE = (keras.layers.Conv1D, keras.layers.LSTM, keras.layers.Dense)


@dataclass
class ClusterResult:
    model: keras.Model  # stripped: plain layers whose kernels hold at most K distinct values
    clusters: int
    distinct: dict[str, int]  # "layer/kernel" -> distinct values measured, zero included
    val_accuracy: float


def cluster(
    student: keras.Model,
    data: DistillationData,
    clusters: int,
    epochs: int,
    preserve_sparsity: bool,
    seed: int = 0,
    verbose: int = 0,
) -> ClusterResult:
    """`preserve_sparsity`: keep the zeros of an earlier pruning step at zero (they do not count among the K)."""
    import tensorflow_model_optimization as tfmot

    clustering = tfmot.clustering.keras
    keras.utils.set_random_seed(seed)  # k-means++ picks its initial centroids at random

    def wrap(layer):
        if isinstance(layer, _CLUSTERABLE):
            return clustering.cluster_weights(
                layer,
                number_of_clusters=clusters,
                preserve_sparsity=preserve_sparsity,
                cluster_centroids_init=clustering.CentroidInitialization.KMEANS_PLUS_PLUS,
            )
        return layer

    wrapped = keras.models.clone_model(clone_with_weights(student), clone_function=wrap)
    val_accuracy = finetune(wrapped, data, epochs, seed=seed, verbose=verbose, label=f"clustering to {clusters} values")
    stripped = clustering.strip_clustering(wrapped)
    return ClusterResult(stripped, clusters, distinct_values(stripped), val_accuracy)


def distinct_values(model: keras.Model) -> dict[str, int]:
    return {name: int(np.unique(v.numpy()).size) for name, v in kernel_variables(model).items()}
