"""One labeled image per class: every evaluation runs, chooses nothing, and says so."""

import json

from ssl_pretrain.cli import main

from ...helpers import folder_overrides


def test_every_evaluation_runs_with_one_labeled_image_per_class(image_folder, tmp_path, capsys):
    assert (
        main(["pretrain", "-c", "configs/fashion_mnist/rotation.yaml", *folder_overrides(image_folder, tmp_path)]) == 0
    )
    run = tmp_path / "run"
    one = tmp_path / "one.csv"
    one.write_text("path,label\nclass_0/img_1.png,a\nclass_1/img_1.png,b\nclass_2/img_1.png,c\n")
    base = [f"data.labels={one}", f"data.test_root={image_folder}"]  # the test set: every image, by sub-folder
    assert main(["probe", str(run), *base, "probe.layers=all", "probe.l2=[1e-3,1e-1]"]) == 0
    probe = json.loads((run / "probe.json").read_text())
    assert "pretrained" not in probe["selected"], "nothing chosen"
    assert [r["encoder"] for r in probe["results"]].count("pretrained") == 1, "one candidate scored"
    assert probe["protocol"]["selection"].startswith("none: a class has a single labeled image")
    assert main(["knn", str(run), *base, "knn.k=[1,5]", "probe.test_diagnostics=true"]) == 0
    knn = json.loads((run / "knn.json").read_text())["results"]
    assert [
        (r["k"], r["chosen"], "top1" in r, "diagnostic_test_top1" in r) for r in knn if r["encoder"] == "pretrained"
    ] == [(1, True, True, False), (5, False, False, True)], (
        "the fixed recipe (the first k) chosen; the other scored on the test set only as a diagnostic"
    )
    for name, extra in (("a", ["finetune.lr=[0.01,0.1]", "finetune.freeze_until=auto"]),
                        ("b", ["finetune.unlabeled=fixmatch", "finetune.unlabeled.threshold=[0.5,0.9]"])):  # fmt: skip
        assert main(["finetune", str(run), *base, "finetune.epochs=2", f"finetune.name={name}", *extra]) == 0
        report = json.loads((run / "finetune" / name / "finetune.json").read_text())
        assert report["val_top1"] is None and report["protocol"]["keep"] == "last"
        assert report["selected"]["validation"].startswith("none: a class has a single labeled image")
        assert len(report["selected"]["candidates"]) == 1 and report["selected"]["chosen"]["lr"] == 0.01
    assert "(no validation: too few labels)" in capsys.readouterr().out
    members = f"ensemble.members=[{run / 'finetune' / 'a'},{run / 'finetune' / 'b'}]"
    assert main(["ensemble", *base, members, "ensemble.method=soft", f"ensemble.output={tmp_path / 'e'}"]) == 0
    assert main(["ensemble", *base, members, "ensemble.method=stacking"]) == 2
    assert "ensemble.method: stacking learns on validation" in capsys.readouterr().err
