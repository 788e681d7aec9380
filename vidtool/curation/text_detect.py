"""Text and watermark regions from a zero-shot detection model in a local folder (`--text-detector DIR`).

The model is OWL-ViT or OWLv2 (transformers' `OwlViTForObjectDetection` / `Owlv2ForObjectDetection`
with their processor): an open-vocabulary detector that scores every image patch's box against text
queries, here QUERIES. A box counts when its best query's probability is over the threshold; the
region a frame's text covers is the union of its counted boxes. `vidtool score` averages that
region's share of the frame over the sampled frames (`text_area`); `vidtool restore --remove-text`
inpaints it. Without a folder both use the classical detector of `vidtool.curation.scores`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vidtool.errors import UserError

QUERIES = ("text", "caption", "subtitles", "watermark", "logo")
MODEL_TYPES = {"owlvit": "OwlViTForObjectDetection", "owlv2": "Owlv2ForObjectDetection"}
BATCH = 8  # frames per forward pass


class TextDetector:
    def __init__(self, folder: str | Path, *, threshold: float = 0.1, device: str = "cpu"):
        import transformers
        from transformers import AutoProcessor
        from transformers.utils import logging as hf_logging

        from vidtool.metrics.clipsim import folder_digest
        from vidtool.standard_folders import check_all_weights_read, config_json, describe, first_line, load_errors

        path = Path(folder)
        if not path.is_dir():
            raise UserError(f"--text-detector {path} is not a folder; pass a local transformers OWL-ViT or OWLv2 folder")
        doc = config_json(path)
        kind = doc.get("model_type") if isinstance(doc, dict) else None
        if kind not in MODEL_TYPES:
            raise UserError(f"--text-detector {path} is {describe(path)}; it needs a transformers OWL-ViT or OWLv2 "
                            "detection folder (model_type owlvit or owlv2)")
        hf_logging.set_verbosity_error()  # the processor backend notice and the loading bar would break --quiet
        hf_logging.disable_progress_bar()
        try:
            self.model, info = getattr(transformers, MODEL_TYPES[kind]).from_pretrained(
                str(path), local_files_only=True, output_loading_info=True)
            self.processor = AutoProcessor.from_pretrained(str(path), local_files_only=True)
        except load_errors() as error:
            raise UserError(f"cannot load the text detector from {path}: {first_line(error)}") from error
        check_all_weights_read(path, info, MODEL_TYPES[kind])
        self.model.eval().to(device)
        self.device, self.threshold, self.kind = device, threshold, kind
        length = int(self.model.config.text_config.max_position_embeddings)
        tokenizer = getattr(self.processor, "tokenizer", None)
        if tokenizer is None or getattr(self.processor, "image_processor", None) is None:
            raise UserError(f"--text-detector {path} has no complete processor (tokenizer and image processor); save "
                            "it beside the model (processor.save_pretrained)")
        tokens = tokenizer(list(QUERIES), padding="max_length", max_length=length, truncation=True, return_tensors="pt")
        special = set(tokenizer.all_special_ids)
        for query, ids, keep in zip(QUERIES, tokens["input_ids"].tolist(), tokens["attention_mask"].tolist()):
            if all(i in special for i, k in zip(ids, keep) if k):
                # A folder without its vocabulary files gives a tokenizer that knows no word: every
                # query would be the unknown token and the boxes would mean nothing.
                raise UserError(f"--text-detector {path}: its tokenizer does not know the query {query!r} (no "
                                "vocabulary files, e.g. vocab.json and merges.txt?); save the processor beside the "
                                "model (processor.save_pretrained)")
        self.input_ids, self.attention_mask = tokens["input_ids"].to(device), tokens["attention_mask"].to(device)
        self.digest = f"{kind}:{folder_digest(path)}"

    def boxes(self, frames: np.ndarray) -> list[np.ndarray]:
        """Per frame (uint8 [T,H,W,3]) the counted boxes as float [N,4] pixel corners x0, y0, x1, y1."""
        import torch

        height, width = frames.shape[1:3]
        # OWLv2's processor pads a frame to a square at its bottom and right: its boxes are fractions of that
        # square. Recent transformers scale them by the larger side themselves, older ones by the size given.
        side = (max(height, width),) * 2 if self.kind == "owlv2" else (height, width)
        found = []
        for start in range(0, len(frames), BATCH):
            chunk = list(frames[start : start + BATCH])
            pixels = self.processor.image_processor(images=chunk, return_tensors="pt")["pixel_values"].to(self.device)
            with torch.no_grad():
                output = self.model(input_ids=self.input_ids.repeat(len(chunk), 1),
                                    attention_mask=self.attention_mask.repeat(len(chunk), 1), pixel_values=pixels)
            results = self.processor.image_processor.post_process_object_detection(
                output, threshold=self.threshold, target_sizes=[side] * len(chunk))
            for result in results:
                box = result["boxes"].float().cpu().numpy().reshape(-1, 4)
                found.append(np.clip(box, 0, [width, height, width, height]))
        return found

    def masks(self, frames: np.ndarray) -> np.ndarray:
        """bool [T,H,W]: each frame's union of counted boxes."""
        covered = np.zeros(frames.shape[:3], dtype=bool)
        for mask, boxes in zip(covered, self.boxes(frames)):
            for x0, y0, x1, y1 in boxes:
                mask[int(np.floor(y0)) : int(np.ceil(y1)), int(np.floor(x0)) : int(np.ceil(x1))] = True
        return covered

    def area(self, frames: np.ndarray) -> float:
        """Mean over the frames of the share of the frame the union of counted boxes covers."""
        return float(self.masks(frames).mean())
