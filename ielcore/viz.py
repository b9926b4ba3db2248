"""Figures produced by a trial (matplotlib, Agg backend, no display needed)."""

from __future__ import annotations

import torch


def prediction_grid(
    path: str,
    images: torch.Tensor,  # (N, Cin, H, W) in [0, 1]
    noisy: torch.Tensor,  # (N, H, W)
    truth: torch.Tensor,  # (N, H, W)
    pred: torch.Tensor,  # (N, H, W)
    num_classes: int,
) -> None:
    """Write a PNG grid with one row per sample: image / noisy label / truth / prediction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = images.shape[0]
    fig, axes = plt.subplots(n, 4, figsize=(8, 2 * n), squeeze=False)
    titles = ("image", "noisy label", "truth", "prediction")
    for r in range(n):
        img = images[r].permute(1, 2, 0).clamp(0, 1).numpy()  # (H, W, Cin)
        panels = (img if img.shape[2] == 3 else img[..., 0], noisy[r], truth[r], pred[r])
        for c, panel in enumerate(panels):
            ax = axes[r][c]
            if c == 0:
                ax.imshow(panel, cmap=None if img.shape[2] == 3 else "gray")
            else:
                ax.imshow(
                    panel.numpy(),  # type: ignore[attr-defined]
                    cmap="viridis",
                    vmin=0,
                    vmax=max(num_classes - 1, 1),
                    interpolation="nearest",
                )
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[c], fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
