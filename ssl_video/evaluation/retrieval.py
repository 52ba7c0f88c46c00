"""Video retrieval: test videos query the training videos by cosine similarity (faiss).

A query is a hit at k when any of its k nearest gallery videos shares its class. faiss runs on the GPU
when faiss-gpu is installed and a GPU is present, otherwise on the CPU (exact inner-product search on
L2-normalised features either way).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ssl_video.evaluation.metrics import l2_normalize

__all__ = ["nearest_neighbours", "retrieval_recall"]


def nearest_neighbours(queries: np.ndarray, gallery: np.ndarray, k: int, use_gpu: bool | None = None) -> np.ndarray:
    """Indices (Q x k) of the ``k`` most cosine-similar gallery rows for each query, best first."""
    import faiss

    q = np.ascontiguousarray(l2_normalize(queries, np.float32))
    g = np.ascontiguousarray(l2_normalize(gallery, np.float32))
    index = faiss.IndexFlatIP(g.shape[1])
    if use_gpu is None:
        use_gpu = hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
    if use_gpu:
        index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
    index.add(g)
    _, neighbours = index.search(q, min(k, g.shape[0]))
    return neighbours


def retrieval_recall(queries: np.ndarray, query_labels: Sequence[int], gallery: np.ndarray,
                     gallery_labels: Sequence[int], ks: Sequence[int] = (1, 5, 10, 20)) -> dict[str, float]:
    """``{"recall@k": fraction of queries with a same-class video among their k nearest}``."""
    neighbours = nearest_neighbours(queries, gallery, max(ks))
    same = np.asarray(gallery_labels)[neighbours] == np.asarray(query_labels)[:, None]
    return {f"recall@{k}": float(same[:, :k].any(axis=1).mean()) for k in ks}
