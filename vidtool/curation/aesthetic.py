"""The `aesthetic` column of `vidtool score --clip-model DIR`: a zero-shot quality score from CLIP.

It is CLIP-IQA's antonym-prompt score (Wang et al. 2023, "Exploring CLIP for Assessing the Look and
Feel of Images"): for each frame, the softmax of CLIP's scaled cosines to a positive and a negative
prompt, and the probability on the positive side, averaged over the frames. 0.5 means CLIP cannot
tell; higher reads as better looking. It is no trained aesthetic predictor (LAION's aesthetic head
is a regression trained on human ratings); it needs nothing but a CLIP folder.
"""

from __future__ import annotations

import numpy as np

POSITIVE = ("a beautiful, high quality photo.", "good photo.")
NEGATIVE = ("an ugly, low quality photo.", "bad photo.")


class AestheticScorer:
    def __init__(self, folder: str, device: str = "cpu"):
        import torch

        from vidtool.metrics.clipsim import CLIPScorer

        self.clip = CLIPScorer(folder, device=device)
        texts = self.clip.text_embeddings(list(POSITIVE + NEGATIVE))
        self.texts = torch.nn.functional.normalize(texts.double(), dim=-1)
        self.scale = float(self.clip.model.logit_scale.detach().exp())
        self.digest = self.clip.digest

    def __call__(self, frames: np.ndarray) -> float:
        """Mean over `frames` (uint8 [T,H,W,3]) of the probability CLIP puts on the positive prompts."""
        import torch

        from vidtool.metrics.clipsim import preprocess_frames

        images = torch.nn.functional.normalize(self.clip.image_embeddings(preprocess_frames(frames, self.clip.size)).double(), dim=-1)
        logits = self.scale * images @ self.texts.T  # [T, positives + negatives]
        positive = torch.softmax(logits, dim=-1)[:, : len(POSITIVE)].sum(-1)
        return float(positive.mean())
