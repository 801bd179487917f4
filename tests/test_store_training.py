"""A training run whose in-training evaluation writes to a PostgreSQL results store given with a
password in the URL: rows land on the server, scores stream to TensorBoard against step and training
GFLOPs, a rerun of the same evaluation adds no row, and the password is in no file and no output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pg_server import drop_database, new_database
from train_helpers import make_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, list[tuple[int, float]]] = {}
    for events in run_dir.rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events.parent))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return out


def test_in_training_eval_on_postgresql_streams_and_keeps_the_password_secret(pg_server_url, tmp_path, capfd):
    from t2ibench.cli import main
    from t2ibench.demo.shapes import ShapesWorld, write_eval_set, write_training_set
    from t2ibench.evaluate import Protocol, evaluate
    from t2ibench.store import ResultsStore
    from t2ibench.train.loop import train

    url = new_database(pg_server_url)
    password = url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
    assert len(password) >= 8
    try:
        world = ShapesWorld()
        shapes = write_training_set(tmp_path / "shapes", world, 8)
        questions = write_eval_set(tmp_path / "eval_set", world, 2, reference_images=False)["questions"]
        options = {"tifa": {"vqa": "shapes-measure", "questions": str(questions)}}
        result = train(make_config(shapes, tmp_path / "run", **{
            "train.steps": 2, "eval.every": 1, "eval.metrics": "tifa", "eval.steps": 2, "eval.limit": 2,
            "eval.db": url, "eval.options": json.dumps(options), "log.tensorboard": True}))
        store = ResultsStore(url)
        rows = sorted(store.query(), key=lambda r: r.step)
        assert [(r.run, r.step) for r in rows] == [("run", 1), ("run", 2)]

        # TensorBoard: eval/tifa against the step, eval_vs_gflops/tifa against cumulative GFLOPs.
        scalars = _scalars(tmp_path / "run")
        by_step = sorted(scalars["eval/tifa"])
        assert [s for s, _ in by_step] == [1, 2]
        assert [v for _, v in by_step] == pytest.approx([r.value for r in rows])
        by_flops = sorted(scalars["eval_vs_gflops/tifa"])
        assert [s for s, _ in by_flops] == [round(r.train_flops / 1e9) for r in rows]
        assert [s for s, _ in by_flops] == [round(e["train_flops"] / 1e9) for e in result.evaluations]
        assert [v for _, v in by_flops] == pytest.approx([r.value for r in rows])

        # `eval` of a checkpoint into the same store, twice: one row.
        ckpt = result.checkpoint / "model"
        for _ in range(2):
            evaluate(ckpt, "tifa", scorer_options=options, protocol=Protocol(steps=2, resolution=32), out_dir=tmp_path / "ckpt-eval", limit=2,
                     db=url, run="ckpt", step=2, progress=False)
        assert len(store.query(run="ckpt")) == 1

        # The store through the command line: site, export, merge into a per-job SQLite store.
        assert main(["leaderboard", "build", "--db", url, "--out", str(tmp_path / "site")]) == 0
        assert main(["leaderboard", "export", str(tmp_path / "all.json"), "--db", url]) == 0
        assert main(["leaderboard", "merge", url, "--into", str(tmp_path / "copy.sqlite")]) == 0
        assert len(ResultsStore(tmp_path / "copy.sqlite")) == 3
        store.close()
    finally:
        drop_database(pg_server_url, url)

    # The password is in no file the run, the evaluation or the commands wrote, and in no output.
    secret = password.encode()
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "results.json" for p in written) and any(p.name == "index.html" for p in written)
    assert any(p.name == "config.json" for p in written)
    leaks = [str(p) for p in written if secret in p.read_bytes()]
    assert leaks == []
    out, err = capfd.readouterr()
    assert password not in out and password not in err
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["eval"]["db"] == url.replace(f":{password}@", "@")


def test_unreachable_eval_db_stops_training_before_step_one(tmp_path):
    import socket

    from t2ibench.errors import UserError
    from t2ibench.train.loop import train
    from train_helpers import write_folder

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = write_folder(tmp_path / "data", 4)
    config = make_config(data, tmp_path / "run", **{"eval.every": 1, "eval.db": f"postgresql://u:pw1234@127.0.0.1:{port}/d"})
    with pytest.raises(UserError, match=f"cannot reach a PostgreSQL server at 127.0.0.1:{port}") as err:
        train(config)
    assert "pw1234" not in str(err.value)
    assert not (tmp_path / "run").exists()
