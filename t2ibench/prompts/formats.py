"""Parsers: the bytes of a prompt set's files -> `PromptRecord`s, one function per format.

Registered sets name their format in the manifest; a user's own file is read by its suffix
(.txt: one prompt a line; .csv/.tsv: a `prompt`/`text`/`caption` column, else the first one;
.jsonl: objects with `prompt`/`text`/`caption`; .json: a list of strings or of such objects).
`id`, `category` columns/keys are used where present; other columns go to `meta`.
"""

from __future__ import annotations

import csv
import io
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from t2ibench.errors import UserError
from t2ibench.prompts.record import PromptRecord

TEXT_KEYS = ("prompt", "text", "caption", "Prompt", "Text", "Caption")


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")  # -sig drops a byte-order mark
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _json(path: Path) -> Any:
    try:
        return json.loads(_text(path))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None


def tifa_text_inputs(files: dict[str, Path], manifest: dict[str, Any]) -> list[PromptRecord]:
    out = []
    for entry in _json(files["text_inputs"]):
        meta = {"source": entry["id"].rsplit("_", 1)[0]}
        if entry.get("coco_val_id"):
            meta["coco_image_id"] = int(entry["coco_val_id"])
        out.append(PromptRecord(id=entry["id"], text=entry["caption"], category=meta["source"], meta=meta))
    return out


def coco_draw(files: dict[str, Path], manifest: dict[str, Any]) -> list[PromptRecord]:
    """COCO-10K: the manifest's seeded draw of rows from the 30K-caption csv, kept in file order."""
    rows = list(csv.DictReader(io.StringIO(_text(files["captions"]))))
    draw = manifest["draw"]
    if len(rows) != draw["from_rows"]:
        raise UserError(f"coco captions file has {len(rows)} rows, the draw expects {draw['from_rows']}")
    picked = sorted(random.Random(draw["seed"]).sample(range(len(rows)), draw["n"]))
    out = []
    for i in picked:
        r = rows[i]
        out.append(PromptRecord(id=str(r["image_id"]), text=r["prompt"], category=None,
                                meta={"coco_image_id": int(r["image_id"]), "evaluation_seed": int(r["evaluation_seed"]),
                                      "width": int(r["width"]), "height": int(r["height"])}))
    return out


def hpsv2_styles(files: dict[str, Path], manifest: dict[str, Any]) -> list[PromptRecord]:
    out = []
    for style, path in files.items():  # manifest order: anime, concept-art, paintings, photo
        for i, text in enumerate(_json(path)):
            out.append(PromptRecord(id=f"{style}_{i:03d}", text=text, category=style))
    return out


def parti_tsv(files: dict[str, Path], manifest: dict[str, Any]) -> list[PromptRecord]:
    rows = csv.DictReader(io.StringIO(_text(files["prompts"])), delimiter="\t")
    return [PromptRecord(id=f"parti_{i:04d}", text=r["Prompt"], category=r["Category"],
                         meta={"challenge": r["Challenge"], "note": r["Note"]}) for i, r in enumerate(rows)]


def drawbench_csv(files: dict[str, Path], manifest: dict[str, Any]) -> list[PromptRecord]:
    rows = csv.DictReader(io.StringIO(_text(files["prompts"])))
    return [PromptRecord(id=f"drawbench_{i:03d}", text=r["Prompt"], category=r["Category"]) for i, r in enumerate(rows)]


def geneval_jsonl(files: dict[str, Path], manifest: dict[str, Any]) -> list[PromptRecord]:
    out = []
    for i, line in enumerate(_text(files["metadata"]).splitlines()):
        if line.strip():
            d = json.loads(line)
            meta = {k: v for k, v in d.items() if k not in ("prompt", "tag")}
            out.append(PromptRecord(id=f"geneval_{i:03d}", text=d["prompt"], category=d["tag"], meta=meta))
    return out


def imagereward_json(files: dict[str, Path], manifest: dict[str, Any]) -> list[PromptRecord]:
    return [PromptRecord(id=str(d["id"]), text=d["prompt"]) for d in _json(files["prompts"])]


def compbench_txt(files: dict[str, Path], manifest: dict[str, Any]) -> list[PromptRecord]:
    out = []
    for category, path in files.items():
        lines = [ln.strip() for ln in _text(path).splitlines() if ln.strip()]
        out.extend(PromptRecord(id=f"{category}_{i:03d}", text=t, category=category) for i, t in enumerate(lines))
    return out


def genai_bench_json(files: dict[str, Path], manifest: dict[str, Any]) -> list[PromptRecord]:
    """GenAI-Bench: genai_image.json ({"00000": {"prompt": ...}}) and genai_skills.json ({tag: [index]})."""
    prompts, skills = _json(files["prompts"]), _json(files["skills"])
    if not isinstance(prompts, dict) or not isinstance(skills, dict):
        raise UserError("GenAI-Bench files: expected JSON objects (genai_image.json, genai_skills.json)")
    tags_of: dict[str, list[str]] = {}
    for tag, indices in skills.items():
        for i in indices:
            tags_of.setdefault(f"{int(i):05d}", []).append(tag)
    out = []
    for pid, entry in prompts.items():
        tags = tags_of.get(pid, [])
        category = "advanced" if "advanced" in tags else "basic" if "basic" in tags else None
        out.append(PromptRecord(id=pid, text=entry["prompt"], category=category, meta={"skills": tags}))
    return out


def dpg_bench_csv(files: dict[str, Path], manifest: dict[str, Any]) -> list[PromptRecord]:
    """DPG-Bench: one record per item of dpg_bench.csv, its question graph in meta (official parsing)."""
    from t2ibench.prompts.dpg_questions import parse_question_graphs

    graphs = parse_question_graphs(_text(files["graphs"]), str(files["graphs"]))
    return [PromptRecord(id=g.item_id, text=g.text, meta={"dpg_questions": g.to_meta()}) for g in graphs.values()]


FORMATS: dict[str, Callable[[dict[str, Path], dict[str, Any]], list[PromptRecord]]] = {
    "tifa-text-inputs": tifa_text_inputs,
    "coco-draw": coco_draw,
    "hpsv2-styles": hpsv2_styles,
    "parti-tsv": parti_tsv,
    "drawbench-csv": drawbench_csv,
    "geneval-jsonl": geneval_jsonl,
    "imagereward-json": imagereward_json,
    "compbench-txt": compbench_txt,
    "genai-bench-json": genai_bench_json,
    "dpg-bench-csv": dpg_bench_csv,
}


# -- a user's own file ---------------------------------------------------------------------------
def _record_from_mapping(d: dict[str, Any], index: int, path: Path) -> PromptRecord:
    key = next((k for k in TEXT_KEYS if k in d), None)
    if key is None:
        raise UserError(f"{path}: entry {index} has no prompt text (one of the keys {', '.join(TEXT_KEYS[:3])})")
    text = str(d[key]).strip()
    rid = str(d["id"]) if d.get("id") not in (None, "") else f"{index:05d}"
    category = d.get("category") or None
    meta = {k: v for k, v in d.items() if k not in (key, "id", "category")}
    for coco_key in ("coco_image_id", "coco_val_id", "image_id"):
        if coco_key in meta and str(meta[coco_key]).strip().isdigit():
            meta["coco_image_id"] = int(meta[coco_key])
            break
    return PromptRecord(id=rid, text=text, category=category, meta=meta)


def user_file(path: Path) -> list[PromptRecord]:
    suffix = path.suffix.lower()
    if suffix == ".txt":
        lines = [ln.strip() for ln in _text(path).splitlines()]
        records = [PromptRecord(id=f"{i:05d}", text=t) for i, t in enumerate(ln for ln in lines if ln)]
    elif suffix in (".csv", ".tsv"):
        reader = csv.DictReader(io.StringIO(_text(path)), delimiter="\t" if suffix == ".tsv" else ",")
        if not reader.fieldnames:
            raise UserError(f"{path}: empty csv (no header)")
        text_col = next((c for c in TEXT_KEYS if c in reader.fieldnames), reader.fieldnames[0])
        records = [_record_from_mapping({("prompt" if k == text_col else k): v for k, v in row.items()}, i, path)
                   for i, row in enumerate(reader)]
    elif suffix == ".jsonl":
        records = []
        for i, line in enumerate(_text(path).splitlines()):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{path}: line {i + 1} is not JSON ({exc.msg})") from None
            records.append(_record_from_mapping(d if isinstance(d, dict) else {"prompt": d}, len(records), path))
    elif suffix == ".json":
        data = _json(path)
        if not isinstance(data, list):
            raise UserError(f"{path}: expected a JSON list of prompts")
        records = [_record_from_mapping(d if isinstance(d, dict) else {"prompt": d}, i, path) for i, d in enumerate(data)]
    else:
        raise UserError(f"{path}: unknown prompt file type {suffix!r}; use .txt, .csv, .tsv, .jsonl or .json")
    records = [r for r in records if r.text]
    if not records:
        raise UserError(f"{path}: no prompts found")
    ids = [r.id for r in records]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise UserError(f"{path}: prompt id {dup!r} occurs more than once; ids must be unique")
    return records


def tifa_question_prompts(path: Path) -> list[PromptRecord]:
    """The captions of a TIFA-format question file, one record per caption id in file order."""
    data = _json(path)
    if not isinstance(data, list):
        raise UserError(f"TIFA question file {path}: expected a JSON list of question objects")
    seen: dict[str, PromptRecord] = {}
    for i, q in enumerate(data):
        if not isinstance(q, dict) or "id" not in q:
            raise UserError(f"TIFA question file {path}: entry {i} has no 'id'")
        cid = str(q["id"])
        if cid not in seen:
            caption = q.get("caption")
            if not caption:
                raise UserError(f"TIFA question file {path}: caption id {cid!r} has no 'caption' to generate from")
            meta = {"coco_image_id": int(q["coco_val_id"])} if str(q.get("coco_val_id") or "").isdigit() else {}
            seen[cid] = PromptRecord(id=cid, text=str(caption), category=cid.rsplit("_", 1)[0] if "_" in cid else None,
                                     meta=meta)
    if not seen:
        raise UserError(f"TIFA question file {path}: contains no questions")
    return list(seen.values())
