"""The demo's data sets on disk: a captioned training folder and a held-out TIFA-format evaluation set."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

from PIL import Image

from t2ibench.atomic import write_bytes_atomic
from t2ibench.demo.questions import questions_for_spec
from t2ibench.demo.shapes import ShapesWorld, alt_text, caption, eval_specs, synthetic_captions, training_scenes
from t2ibench.errors import UserError


def _png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


CAPTION_MODES = ("full", "alt+synthetic")


def write_training_set(out_dir: str | Path, world: ShapesWorld, n: int, seed: int = 0, captions: str = "full") -> Path:
    """Image folder `<stem>.png` + `<stem>.txt` (caption), plus `scenes.jsonl` and `world.json`.

    `captions`: "full" writes the scene's full caption as `<stem>.txt`; "alt+synthetic" writes a web-style
    alt-text that names one group only (`shapes.alt_text`) as `<stem>.txt` and five whole-scene captions as
    `<stem>.syn.json` (`shapes.synthetic_captions`), the two sources the trainer's synthetic-caption mixing
    chooses between (`data.alt_text_prob`).

    Resumable: images already on disk are kept (the content is a function of world, seed and index).
    """
    if captions not in CAPTION_MODES:
        raise UserError(f"captions must be one of {', '.join(CAPTION_MODES)}, got {captions!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    settings = {"world": world.to_dict(), "seed": seed, "captions": captions}
    previous = out / "world.json"
    if previous.exists():
        old = json.loads(previous.read_text())
        old_settings = {"world": old.get("world"), "seed": old.get("seed"), "captions": old.get("captions", "full")}
        if old_settings != json.loads(json.dumps(settings)):
            raise UserError(f"{out} holds a shapes training set made with other world settings, seed or captions; "
                            "use another folder or delete it")
        for stale in out.glob("train_*.*"):  # left from a larger earlier run (scenes are a prefix)
            if stale.suffix in (".png", ".txt", ".json") and int(stale.name[6:12]) >= n:
                stale.unlink()
    scenes = training_scenes(world, n, seed)
    lines = []
    for i, scene in enumerate(scenes):
        stem = f"train_{i:06d}"
        png, txt, syn = out / f"{stem}.png", out / f"{stem}.txt", out / f"{stem}.syn.json"
        if not (png.exists() and txt.exists() and (captions == "full" or syn.exists())):
            write_bytes_atomic(png, _png_bytes(world.render(scene)))
            if captions == "full":
                write_bytes_atomic(txt, scene.caption.encode())
            else:
                write_bytes_atomic(txt, alt_text(scene.spec, random.Random(f"alt|{seed}|{i}")).encode())
                write_bytes_atomic(syn, json.dumps({"captions": synthetic_captions(scene.spec)}).encode())
        lines.append(json.dumps({"stem": stem, **scene.scene_graph()}))
    write_bytes_atomic(out / "scenes.jsonl", ("\n".join(lines) + "\n").encode())
    write_bytes_atomic(previous, json.dumps({**settings, "n": n}, indent=1).encode())
    return out


def write_eval_set(out_dir: str | Path, world: ShapesWorld, n_prompts: int, seed: int = 0,
                   reference_images: bool = True) -> dict[str, Path]:
    """Held-out prompts in TIFA's schemas: `text_inputs.json` ([{id, caption}]), `questions.json`
    (TIFA question-answer list) and, optionally, ground-truth renders `reference/<id>.png`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    specs = eval_specs(world, n_prompts, seed)
    rng = random.Random(f"eval-layout|{seed}")
    text_inputs, questions = [], []
    if reference_images:
        (out / "reference").mkdir(exist_ok=True)
    for i, spec in enumerate(specs):
        cid = f"shapes_{i:04d}"
        text_inputs.append({"id": cid, "caption": caption(spec)})
        questions.extend(questions_for_spec(spec, cid, world))
        if reference_images:
            image = world.render(world.layout(spec, rng))
            write_bytes_atomic(out / "reference" / f"{cid}.png", _png_bytes(image))
    paths = {"text_inputs": out / "text_inputs.json", "questions": out / "questions.json"}
    write_bytes_atomic(paths["text_inputs"], json.dumps(text_inputs, indent=1).encode())
    write_bytes_atomic(paths["questions"], json.dumps(questions, indent=1).encode())
    if reference_images:
        paths["reference"] = out / "reference"
    return paths
