"""BLIP VQA backends (transformers `BlipForQuestionAnswering`), the TIFA repo's `blip-large`/`blip-base`.

The official code asks one question at a time: `processor(images=image, text=question)` then
`model.generate(**inputs, max_length=50)`. Here the work is batched without changing the answers:
* every distinct image goes through the vision encoder once, however many questions it has;
* questions are batched only with questions of the same token length. `BlipForQuestionAnswering.generate`
  lets the answer decoder attend to *every* question position (its mask is all ones), so padding a
  shorter question would change its answer; equal-length batches need no padding.
`_generate` repeats the library's `generate` with precomputed image embeddings; a test checks it gives
the library's own tokens.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from t2ibench.metrics.tifa.vqa import HubVQABackend, snapshot_tag, to_rgb


class BlipVQA(HubVQABackend):
    answers_are_choices = False
    max_length: ClassVar[int] = 50  # as in the official BLIP wrapper

    def __init__(self, device: str = "cpu", weights: Path | None = None, batch_size: int = 32,
                 dtype: str = "float32", **options: Any):
        super().__init__(device, weights, **options)
        import torch
        from transformers import BlipForQuestionAnswering, BlipProcessor

        path = self._weights_dir(weights)
        self.processor = BlipProcessor.from_pretrained(path)
        self._check_tokenizer(self.processor.tokenizer)
        self.dtype = getattr(torch, dtype)
        self.model = BlipForQuestionAnswering.from_pretrained(path, dtype=self.dtype).to(device).eval()
        self.batch_size = batch_size

    @property
    def version(self) -> str:
        return f"{self.name}@{snapshot_tag(self.weights_path)}"

    def _generate(self, input_ids, image_embeds):
        """`BlipForQuestionAnswering.generate` from image embeddings (unpadded questions)."""
        import torch

        model = self.model
        image_mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
        question_embeds = model.text_encoder(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                             encoder_hidden_states=image_embeds,
                                             encoder_attention_mask=image_mask, return_dict=False)[0]
        question_mask = torch.ones(question_embeds.shape[:-1], dtype=torch.long, device=question_embeds.device)
        bos = torch.full((question_embeds.shape[0], 1), model.decoder_start_token_id, device=question_embeds.device)
        return model.text_decoder.generate(input_ids=bos, eos_token_id=model.config.text_config.sep_token_id,
                                           pad_token_id=model.config.text_config.pad_token_id,
                                           encoder_hidden_states=question_embeds,
                                           encoder_attention_mask=question_mask, max_length=self.max_length)

    def answer(self, images: Sequence[Any], questions: Sequence[str],
               choices: Sequence[Sequence[str]]) -> list[str]:
        import torch

        if not questions:
            return []
        # Distinct images (the scorer repeats the same object for each of its questions).
        slot: dict[int, int] = {}
        unique = []
        image_of = []
        for im in images:
            if id(im) not in slot:
                slot[id(im)] = len(unique)
                unique.append(im)
            image_of.append(slot[id(im)])
        token_ids = self.processor.tokenizer(list(questions))["input_ids"]
        by_length: dict[int, list[int]] = defaultdict(list)
        for i, ids in enumerate(token_ids):
            by_length[len(ids)].append(i)
        answers: list[str] = [""] * len(questions)
        with torch.inference_mode():
            embeds = []
            for start in range(0, len(unique), self.batch_size):
                pixels = self.processor.image_processor(
                    [to_rgb(im) for im in unique[start:start + self.batch_size]], return_tensors="pt"
                )["pixel_values"].to(self.device, self.dtype)
                embeds.append(self.model.vision_model(pixel_values=pixels)[0])
            image_embeds = torch.cat(embeds)
            for idx in by_length.values():
                for start in range(0, len(idx), self.batch_size):
                    chunk = idx[start:start + self.batch_size]
                    input_ids = torch.tensor([token_ids[i] for i in chunk], device=self.device)
                    out = self._generate(input_ids, image_embeds[[image_of[i] for i in chunk]])
                    for i, text in zip(chunk, self.processor.batch_decode(out, skip_special_tokens=True)):
                        answers[i] = text
        return answers


class BlipVQACapfiltLarge(BlipVQA):
    name = "blip-vqa-capfilt-large"
    repo_id = "Salesforce/blip-vqa-capfilt-large"


class BlipVQABase(BlipVQA):
    name = "blip-vqa-base"
    repo_id = "Salesforce/blip-vqa-base"
