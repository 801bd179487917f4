"""The demo's data sets on disk: a captioned training folder and a held-out TIFA-format evaluation set."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

from PIL import Image

from t2ibench.atomic import write_bytes_atomic
from t2ibench.demo.questions import questions_for_spec
from t2ibench.demo.shapes import ShapesWorld, caption, eval_specs, training_scenes
from t2ibench.errors import UserError


def _png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def write_training_set(out_dir: str | Path, world: ShapesWorld, n: int, seed: int = 0) -> Path:
    """Image folder `<stem>.png` + `<stem>.txt` (caption), plus `scenes.jsonl` and `world.json`.

    Resumable: images already on disk are kept (the content is a function of world, seed and index).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    settings = {"world": world.to_dict(), "seed": seed}
    previous = out / "world.json"
    if previous.exists():
        old = json.loads(previous.read_text())
        if {"world": old.get("world"), "seed": old.get("seed")} != json.loads(json.dumps(settings)):
            raise UserError(f"{out} holds a shapes training set made with other world settings or seed; "
                            "use another folder or delete it")
        for stale in out.glob("train_*.*"):  # left from a larger earlier run (scenes are a prefix)
            if stale.suffix in (".png", ".txt") and int(stale.stem.split("_")[1]) >= n:
                stale.unlink()
    scenes = training_scenes(world, n, seed)
    lines = []
    for i, scene in enumerate(scenes):
        stem = f"train_{i:06d}"
        png, txt = out / f"{stem}.png", out / f"{stem}.txt"
        if not (png.exists() and txt.exists()):
            write_bytes_atomic(png, _png_bytes(world.render(scene)))
            write_bytes_atomic(txt, scene.caption.encode())
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
