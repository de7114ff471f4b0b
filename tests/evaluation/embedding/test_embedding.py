"""``ssl-pretrain embed`` and ``neighbours``: a collection into a memory-mapped file with its index (unreadable
files skipped and listed), restart where it stopped, the TensorBoard projector read back by TensorBoard's own
plugin, exact neighbours and near-duplicates, outputs never overwritten without --force."""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing import plugin_event_multiplexer
from tensorboard.plugins import base_plugin
from tensorboard.plugins.projector.projector_plugin import ProjectorPlugin
from werkzeug.test import Client

import ssl_pretrain as ssl
from ssl_pretrain.cli import main
from ssl_pretrain.config import DataConfig
from ssl_pretrain.data.decode import decode_image
from ssl_pretrain.data.holdout import hash_position
from ssl_pretrain.data.shards import write_shards
from ssl_pretrain.data.sources import scan_folder
from ssl_pretrain.errors import BadInput
from ssl_pretrain.evaluation.embedding import embed as embed_module
from ssl_pretrain.evaluation.embedding.duplicates import LeaderGroups, approximate_pair_chunks, exact_pair_chunks
from ssl_pretrain.evaluation.embedding.find import external_queries
from ssl_pretrain.evaluation.embedding.run import open_collection
from ssl_pretrain.evaluation.embedding.search import approximate_top_k, collection_mean, top_k_cosine
from ssl_pretrain.evaluation.embedding.store import IndexRow, IndexRows, open_embeddings

from ...helpers import folder_overrides


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny pretrained run for the module, on its own copy of the generated image folder, with one broken
    file added to the folder afterwards."""
    from ...conftest import make_image_folder

    root = tmp_path_factory.mktemp("embedding")
    image_folder = make_image_folder(root / "images")
    args = ["pretrain", "-c", "configs/fashion_mnist/rotation.yaml", *folder_overrides(image_folder, root)]
    assert main([*args, "data.pretrain_on_test=true", "gauges.every=null"]) == 0
    (image_folder / "class_0" / "broken.png").write_bytes(b"not a png")
    return root / "run", image_folder


@pytest.fixture
def run(trained):
    return trained[0]


@pytest.fixture
def image_folder(trained):
    return trained[1]


def _embed(run, out, *extra):
    return main(["embed", f"evaluation.encoder={run}", f"embed.output={out}", "embed.projector_images=20", *extra])


def test_embed_writes_vectors_an_index_and_the_skipped_files(run, image_folder, tmp_path):
    out = tmp_path / "emb"
    assert _embed(run, out, "evaluation.batch_size=8") == 0
    vectors = np.load(out / "embeddings.npy", mmap_mode="r")
    with (out / "index.csv").open() as f:
        index = list(csv.DictReader(f))
    assert vectors.shape == (36, 8) and vectors.dtype == np.float32 and len(index) == 36
    assert (out / "skipped.txt").read_text().strip().endswith("broken.png")
    assert {row["label"] for row in index} == {"class_0", "class_1", "class_2"}
    first = index[0]
    encoder = ssl.load_encoder(run)
    image = torch.from_numpy(decode_image(first["path"], 16, 3).copy()).float()[None] / 255
    with torch.no_grad():
        expected = encoder(image)[0].numpy()
    np.testing.assert_allclose(vectors[0], expected, rtol=1e-4, atol=1e-5)
    record = json.loads((out / "embed.json").read_text())
    assert record["complete"] and record["rows"] == 36 and record["skipped"] == 1


def test_normalised_embeddings_have_unit_rows_and_other_data_is_resized_for_the_encoder(
    run, tmp_path, fashion_mnist_root
):
    out = tmp_path / "emb"
    grey = ["data.name=fashion_mnist", f"data.root={fashion_mnist_root}", "data.download=false", "data.limit=null"]
    assert _embed(run, out, "embed.normalize=true", *grey) == 0  # 28 px grey images, an encoder of 16 px RGB
    vectors = np.load(out / "embeddings.npy")
    assert vectors.shape == (64, 8)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)


def test_an_interrupted_embedding_continues_where_it_stopped_whatever_the_batch(run, tmp_path, monkeypatch):
    straight = tmp_path / "straight"
    assert _embed(run, straight, "evaluation.batch_size=4", "embed.chunk_images=12") == 0
    _interrupt_after(monkeypatch, batches=4)
    cut = tmp_path / "cut"
    assert _embed(run, cut, "evaluation.batch_size=4", "embed.chunk_images=12") == 130
    monkeypatch.undo()
    assert json.loads((cut / "embed.json").read_text())["positions_done"] == 12, "the first chunk of 12 was recorded"
    summary = ssl.embed(run, [f"embed.output={cut}", "evaluation.batch_size=8", "embed.chunk_images=12"])
    assert summary.resumed_from == 12 and summary.rows == 36, "resumed at position 12 with batches of 8"
    np.testing.assert_array_equal(np.load(cut / "embeddings.npy"), np.load(straight / "embeddings.npy"))
    assert (cut / "index.csv").read_bytes() == (straight / "index.csv").read_bytes()
    assert (cut / "skipped.txt").read_bytes() == (straight / "skipped.txt").read_bytes()


def test_a_resume_with_another_encoder_or_precision_is_refused(run, tmp_path, monkeypatch, capsys):
    _interrupt_after(monkeypatch, batches=2)
    cut = tmp_path / "cut"
    copy = Path(shutil.copytree(run, tmp_path / "run"))
    assert _embed(copy, cut, "evaluation.batch_size=4", "embed.chunk_images=4") == 130
    monkeypatch.undo()
    before = (cut / "embeddings.npy").read_bytes()
    assert _embed(copy, cut, "evaluation.batch_size=4", "embed.chunk_images=4", "trainer.precision=bf16") == 2
    assert "precision" in capsys.readouterr().err
    state = torch.load(copy / "encoder.pt", weights_only=True)
    torch.save({k: v + 1 if v.is_floating_point() else v for k, v in state.items()}, copy / "encoder.pt")
    assert _embed(copy, cut, "evaluation.batch_size=4", "embed.chunk_images=4") == 2, "re-pretrained: other weights"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "encoder_sha256" in err[0] and "--force" in err[0]
    assert (cut / "embeddings.npy").read_bytes() == before


def test_the_writer_refuses_rows_past_its_capacity_and_a_resume_keeps_whole_csv_records(tmp_path):
    folder = tmp_path / "emb"
    writer = embed_module.EmbeddingWriter(folder, capacity=3, dim=2, resume=None)
    writer.append(np.ones((2, 2), np.float32), [IndexRow(0, "a\nnewline.png", "x"), IndexRow(1, "b.png", "y")], [])
    writer.append(np.ones((0, 2), np.float32), [], ["broken\n"[:-1], "gone.png"])
    with pytest.raises(ValueError, match="do not fit the 3 rows"):
        writer.append(np.ones((2, 2), np.float32), [IndexRow(2, "c.png", "x"), IndexRow(3, "d.png", "y")], [])
    writer.flush()
    embed_module.EmbeddingWriter(folder, capacity=3, dim=2, resume={"rows_done": 1, "skipped": 1})
    with (folder / "index.csv").open(newline="") as f:
        assert [row["path"] for row in csv.DictReader(f)] == ["a\nnewline.png"], "a record spanning two lines kept"
    assert (folder / "skipped.txt").read_text() == "broken\n", "skipped files after the recorded chunk dropped"


def test_a_labeled_folder_is_embedded_whole_by_default_and_the_source_is_said(run, image_folder, tmp_path, capsys):
    out = tmp_path / "emb"
    assert _embed(run, out, "data.pretrain_on_test=false") == 0
    files = [p for p in image_folder.rglob("*.png") if p.name != "broken.png"]
    assert len(np.load(out / "embeddings.npy")) == len(files), "the held-out test files are embedded too"
    assert f"embedded: image folder {image_folder}" in capsys.readouterr().out
    train = tmp_path / "train"
    assert _embed(run, train, "embed.split=train") == 0
    record = json.loads((train / "embed.json").read_text())
    assert record["rows"] < len(files) and "without the held-out test files" in record["source"]


def test_finished_embeddings_are_not_overwritten_without_force(run, tmp_path, capsys):
    out = tmp_path / "emb"
    assert _embed(run, out) == 0
    before = (out / "embeddings.npy").read_bytes()
    assert _embed(run, out, "embed.normalize=true") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "embed.output" in err[0] and "--force" in err[0]
    assert (out / "embeddings.npy").read_bytes() == before
    assert main(["embed", "--force", f"evaluation.encoder={run}", f"embed.output={out}", "embed.normalize=true"]) == 0


def test_the_projector_reads_back_through_tensorboard_s_own_plugin(run, tmp_path):
    out = tmp_path / "emb"
    assert _embed(run, out) == 0
    logdir = out / "projector"
    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    plugin = ProjectorPlugin(base_plugin.TBContext(logdir=str(logdir), multiplexer=multiplexer))
    client = Client(_app(plugin))
    runs = json.loads(client.get("/runs").get_data())
    assert runs == ["."]
    config = json.loads(client.get("/info?run=.").get_data())
    (embedding,) = config["embeddings"]
    assert embedding["tensorShape"] == [20, 8] and embedding["sprite"]["singleImageDim"] == [16, 16]
    metadata = client.get(f"/metadata?run=.&name={embedding['tensorName']}").get_data(as_text=True).splitlines()
    assert metadata[0] == "label\tsource" and len(metadata) == 21 and metadata[1].split("\t")[0].startswith("class_")
    sprite = client.get(f"/sprite_image?run=.&name={embedding['tensorName']}")
    assert sprite.status_code == 200 and sprite.get_data()[:8] == b"\x89PNG\r\n\x1a\n"


def _app(plugin):
    """A WSGI app dispatching the plugin's routes, as TensorBoard's server does."""
    routes = plugin.get_plugin_apps()

    def app(environ, start_response):
        return routes[environ["PATH_INFO"]](environ, start_response)

    return app


def test_neighbours_answer_queries_skip_non_images_and_report_planted_duplicates(run, image_folder, tmp_path):
    image_folder = Path(shutil.copytree(image_folder, tmp_path / "collection"))  # the module's folder stays as it is
    copy = image_folder / "class_1" / "copy_of_img_3.png"
    shutil.copy(image_folder / "class_1" / "img_3.png", copy)
    out = tmp_path / "emb"
    assert _embed(run, out, f"data.root={image_folder}") == 0
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    outside = tmp_path / "outside.png"
    shutil.copy(image_folder / "class_2" / "img_5.png", outside)
    queries = f"neighbours.queries=[{image_folder / 'class_1' / 'img_3.png'}, {outside}, {text}]"
    assert main(["neighbours", str(out), queries, "neighbours.k=4", "neighbours.threshold=0.999"]) == 0
    found = json.loads((out / "neighbours" / "neighbours.json").read_text())
    assert set(found) == {str(image_folder / "class_1" / "img_3.png"), str(outside)}, "the text file is skipped"
    inside = found[str(image_folder / "class_1" / "img_3.png")]
    assert inside[0]["source"] == str(copy) and inside[0]["similarity"] > 0.9999, "itself excluded, its copy first"
    assert found[str(outside)][0]["source"] == str(image_folder / "class_2" / "img_5.png")
    duplicates = json.loads((out / "neighbours" / "duplicates.json").read_text())
    original = str(image_folder / "class_1" / "img_3.png")
    group = duplicates[original] if original in duplicates else duplicates[str(copy)]
    assert {member["source"] for member in group} & {original, str(copy)} and group[0]["similarity"] > 0.999
    with (out / "neighbours" / "pairs.csv").open() as f:
        pairs = list(csv.DictReader(f))
    assert {original, str(copy)} in [{p["source_a"], p["source_b"]} for p in pairs], "the pair, with its similarity"
    assert all(float(p["similarity"]) >= 0.999 for p in pairs)
    assert (out / "neighbours" / "neighbours.png").read_bytes()[:4] == b"\x89PNG"


def test_neighbours_refuse_to_overwrite_and_write_csv_with_force(run, tmp_path, capsys):
    out = tmp_path / "emb"
    assert _embed(run, out) == 0
    assert main(["neighbours", str(out)]) == 0
    assert main(["neighbours", str(out), "neighbours.format=csv"]) == 2
    assert "neighbours.output" in capsys.readouterr().err
    args = ["neighbours", "--force", str(out), "neighbours.format=csv", "neighbours.threshold=-1"]
    assert main([*args, "neighbours.index=faiss", "neighbours.candidates=4"]) == 0
    with (out / "neighbours" / "pairs.csv").open() as f:
        assert len(list(csv.DictReader(f))) <= 4 * 36, "faiss: pairs among each image's 4 candidates only"
    assert main(args) == 0
    rows = (out / "neighbours" / "duplicates.csv").read_text().splitlines()
    assert rows[0] == "group,size,source,similarity" and len(rows) == 37, "threshold -1: one group of every image"


def test_outside_queries_are_embedded_in_batches_in_the_collection_s_precision(run, image_folder, tmp_path):
    out = tmp_path / "emb"
    assert _embed(run, out, "trainer.precision=bf16", "embed.projector_images=0") == 0
    outside = tmp_path / "queries"
    outside.mkdir()
    originals = sorted(image_folder.rglob("img_*.png"))[:5]
    for n, original in enumerate(originals):
        shutil.copy(original, outside / f"q{n}.png")
    args = ["neighbours", str(out), f"neighbours.queries=[{outside}]", "neighbours.k=1", "evaluation.batch_size=2"]
    assert main(args) == 0
    found = json.loads((out / "neighbours" / "neighbours.json").read_text())
    assert [found[str(outside / f"q{n}.png")][0]["source"] for n in range(5)] == [str(o) for o in originals]
    vectors, index, record = open_embeddings(out)
    dataset = open_collection(DataConfig(**record["settings"]["data"]), record["settings"]["split"])
    query = external_queries([str(outside)], vectors, index, record["settings"], dataset, torch.device("cpu"), 2)
    rows = [next(int(r["row"]) for r in index if r["path"] == str(o)) for o in originals]
    expected = vectors.take(rows)
    np.testing.assert_allclose(query.vectors.numpy(), expected, rtol=0, atol=1e-6), "as embed wrote them, in bf16"
    fp32 = dict(record["settings"], precision="fp32")
    other = external_queries([str(outside)], vectors, index, fp32, dataset, torch.device("cpu"), 2).vectors.numpy()
    assert np.abs(other - expected).max() > 1e-4, "fp32 would not give the collection's vectors"


def test_nearest_reads_no_index_and_the_index_is_read_by_row_with_multi_line_records(run, tmp_path):
    out = tmp_path / "emb"
    assert _embed(run, out, "embed.projector_images=0") == 0
    vectors = np.load(out / "embeddings.npy")
    (out / "index.csv").unlink()
    sims, rows = ssl.nearest(vectors[:3], out, k=1)
    assert rows.flatten().tolist() == [0, 1, 2] and torch.all(sims > 0.9999)
    index = tmp_path / "index.csv"
    records = [["row", "position", "path", "label"], [0, 5, 'a "quoted"\nname.png', "x"], [1, 6, "b.png", ""]]
    with index.open("w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(records)
    rows_read = IndexRows(index)
    assert len(rows_read) == 2 and rows_read[0]["path"] == 'a "quoted"\nname.png' and rows_read[1]["position"] == "6"
    assert [row["path"] for row in rows_read] == ['a "quoted"\nname.png', "b.png"]


def test_a_run_s_dataset_keys_stay_behind_when_a_command_names_another_dataset(image_folder, tmp_path):
    """Pretrained with ``data.limit`` on a folder; embedding shards through the API must not inherit the limit
    (streamed data refuses one), nor the folder's other keys."""
    args = ["pretrain", "-c", "configs/fashion_mnist/rotation.yaml", *folder_overrides(image_folder, tmp_path)]
    assert main([*args, "data.limit=30", "gauges.every=null"]) == 0
    shards, _ = write_shards(image_folder, str(tmp_path / "shards" / "part-%03d.tar"), 10)
    data = {"data.name": "shards", "data.root": str(shards[0].parent), "data.image_size": 16}
    summary = ssl.embed(tmp_path / "run", {**data, "embed.output": str(tmp_path / "emb"), "embed.projector_images": 0})
    assert summary.rows == 36, "every readable image of the shards, no limit carried over"
    record = json.loads((tmp_path / "emb" / "embed.json").read_text())
    assert record["settings"]["data"]["limit"] is None and record["settings"]["data"]["development"] is None


def test_streamed_shards_embed_in_order_by_key_continue_and_serve_neighbours(run, image_folder, tmp_path, monkeypatch):
    """The pretraining split of tar shards (streamed, never held in memory) embeds in shard order: rows named
    ``<shard>:<key>``, held-out samples left out, the broken image skipped, each vector the encoder's of that
    image; an interrupted pass continues to the same bytes; neighbours reads its images back from the shards."""
    folder = Path(shutil.copytree(image_folder, tmp_path / "collection"))
    held = 0.2  # data.test_fraction's default: labeled shards hold these keys out of pretraining
    twin = {p: p.with_name(f"copy_of_{p.name}") for p in sorted(folder.rglob("img_*.png"))}
    source = next(
        p for p, c in twin.items() if min(hash_position(_key(folder, p)), hash_position(_key(folder, c))) >= held
    )
    shutil.copy(source, twin[source])
    shards, _ = write_shards(folder, str(tmp_path / "shards" / "part-%03d.tar"), 5)
    data = ["data.name=shards", f"data.root={shards[0].parent}", "data.pretrain_on_test=false", "embed.split=pretrain",
            "evaluation.batch_size=4"]  # fmt: skip
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    assert _embed(run, straight, "embed.chunk_images=8", *data) == 0
    with (straight / "index.csv").open() as f:
        index = list(csv.DictReader(f))
    kept = [_key(folder, p) for p in scan_folder(folder)[0] if hash_position(_key(folder, p)) >= held]
    kept.remove("class_0/broken")
    assert [row["path"].split(":")[-1] for row in index] == kept, "shard order, held-out keys left out"
    assert index[0]["path"] == f"{shards[0]}:{kept[0]}" and index[0]["label"] in {"0", "1", "2"}
    assert "class_0/broken" in (straight / "skipped.txt").read_text()
    images = torch.stack([torch.from_numpy(decode_image(folder / f"{k}.png", 16, 3).copy()) for k in kept])
    with torch.no_grad():
        expected = ssl.load_encoder(run)(images.float() / 255).numpy()
    np.testing.assert_allclose(np.load(straight / "embeddings.npy"), expected, rtol=1e-4, atol=1e-5)

    _interrupt_after(monkeypatch, batches=3)
    assert _embed(run, cut, "embed.chunk_images=8", *data) == 130
    monkeypatch.undo()
    assert ssl.embed(run, [f"embed.output={cut}", "embed.chunk_images=8", *data]).resumed_from == 8
    for name in ("embeddings.npy", "index.csv", "skipped.txt"):
        assert (cut / name).read_bytes() == (straight / name).read_bytes()

    assert main(["neighbours", str(straight), "neighbours.k=3", "neighbours.threshold=0.9999"]) == 0
    duplicates = json.loads((straight / "neighbours" / "duplicates.json").read_text())
    names = {_key(folder, source), _key(folder, twin[source])}
    pair = {row["path"] for row in index if row["path"].split(":")[-1] in names}
    groups = [{head, *(member["source"] for member in rest)} for head, rest in duplicates.items()]
    assert len(pair) == 2 and any(pair <= group for group in groups), "the copy found"
    assert (straight / "neighbours" / "neighbours.png").read_bytes()[:4] == b"\x89PNG"


def _interrupt_after(monkeypatch, batches: int) -> None:
    """Make ``embed`` stop (as with Ctrl-C) once it has written ``batches`` batches."""
    append, calls = embed_module.EmbeddingWriter.append, []

    def dies_after(self, *args):
        calls.append(1)
        if len(calls) > batches:
            raise KeyboardInterrupt
        append(self, *args)

    monkeypatch.setattr(embed_module.EmbeddingWriter, "append", dies_after)


def _key(folder: Path, path: Path) -> str:
    """The sample key ``write_shards`` gives the image ``path`` of ``folder``."""
    return path.relative_to(folder).with_suffix("").as_posix()


def test_chunked_search_equals_brute_force():
    torch.manual_seed(0)
    base = torch.randn(103, 16).numpy()
    queries = torch.randn(7, 16)
    centre = collection_mean(base, chunk=10)
    np.testing.assert_allclose(centre.numpy(), base.mean(0), atol=1e-5)
    sims, rows = top_k_cosine(queries, base, k=5, chunk=10, centre=centre)
    full = (
        torch.nn.functional.normalize(queries - centre, dim=1)
        @ torch.nn.functional.normalize(torch.from_numpy(base) - centre, dim=1).T
    )
    expected = full.topk(5, dim=1)
    torch.testing.assert_close(sims, expected.values)
    assert torch.equal(rows, expected.indices)
    own = top_k_cosine(torch.from_numpy(base[:3]), base, k=2, chunk=10, exclude=torch.arange(3))[1]
    assert all(i not in own[i].tolist() for i in range(3)), "a base row is not its own neighbour"


def _groups(chunks):
    groups = LeaderGroups.empty(6)
    pairs = []
    for i, j, sims in chunks:
        groups.add(i, j, sims)
        pairs += zip(i.tolist(), j.tolist(), strict=True)
    return groups, pairs


def test_near_duplicate_groups_do_not_chain_and_come_biggest_first():
    # 0 ~ 1 ~ 2 along an arc (0 and 2 apart); 3, 4, 5 all close together
    angles = [0.0, 0.04, 0.08, 1.5, 1.51, 1.52]
    base = np.array([[np.cos(a), np.sin(a)] for a in angles], dtype=np.float32)
    threshold = float(np.cos(0.05))
    groups, pairs = _groups(exact_pair_chunks(base, threshold, chunk=2, centre=None))
    assert set(pairs) == {(0, 1), (1, 2), (3, 4), (3, 5), (4, 5)}
    assert groups.groups() == [[3, 4, 5], [0, 1]], "2 joins no group: it is not within the threshold of 0"
    for group in groups.groups():
        for member in group[1:]:
            assert groups.similarity[member] >= threshold and groups.leader[member] == group[0]
    approximate, approximate_pairs = _groups(approximate_pair_chunks(base, threshold, 4, None, candidates=5))
    assert set(approximate_pairs) == set(pairs) and approximate.groups() == groups.groups()


def test_faiss_hnsw_finds_nearly_what_exact_search_finds_and_skips_the_query_s_own_row():
    torch.manual_seed(0)
    base = torch.randn(3000, 32).numpy()
    queries = torch.from_numpy(base[:200])
    exact = top_k_cosine(queries, base, k=5, exclude=torch.arange(200))[1]
    sims, approx = approximate_top_k(queries, base, k=5, chunk=1000, exclude=torch.arange(200))
    recall = np.mean([len(set(a) & set(e)) / 5 for a, e in zip(approx.tolist(), exact.tolist(), strict=True)])
    assert recall > 0.95 and approx.shape == (200, 5)
    assert all(i not in approx[i].tolist() for i in range(200)), "a base row is not its own neighbour"
    assert torch.all(sims[:, :-1] >= sims[:, 1:]), "most similar first"


def test_both_searches_return_at_most_the_rows_there_are():
    base = torch.randn(6, 4).numpy()
    for search in (top_k_cosine, approximate_top_k):
        sims, rows = search(torch.from_numpy(base[:2]), base, k=10, exclude=torch.arange(2))
        assert rows.shape == (2, 5) and (rows >= 0).all(), search.__name__
        assert sorted(rows[0].tolist()) == [1, 2, 3, 4, 5], search.__name__


def test_without_faiss_the_approximate_index_says_what_to_install(monkeypatch):
    import builtins

    real_import = builtins.__import__
    monkeypatch.setattr(
        builtins, "__import__", lambda name, *a, **k: (_ for _ in ()).throw(ImportError(name)) if name == "faiss"
        else real_import(name, *a, **k)
    )  # fmt: skip
    with pytest.raises(BadInput, match=r"pip install 'ssl-pretrain\[faiss\]'"):
        approximate_top_k(torch.randn(2, 4), np.zeros((10, 4), dtype=np.float32), k=2)
