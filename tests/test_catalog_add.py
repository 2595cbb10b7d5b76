"""Adding audio files to a catalogue with a model: dedupe by content, re-embedding, windows, unreadable files."""

from __future__ import annotations

import numpy as np
import pytest

from singerid.audio import write_audio
from singerid.catalog import Catalog, CatalogError
from singerid.data.signals import voiced_clip
from singerid.infer import load_model
from singerid.vectors import l2_normalize


@pytest.fixture(scope="module")
def encoder(model_dir):
    return load_model(model_dir)


def test_adding_files_embeds_them_like_the_encoder_and_skips_known_content(tmp_path, encoder, tone_corpus):
    files = sorted(tone_corpus.rglob("*.wav"))
    with Catalog.open_or_create(tmp_path / "c", encoder) as cat:
        report = cat.add(encoder, files, singer=[f.parent.name for f in files])
        assert len(report.added) == len(files) and not report.unchanged
        again = cat.add(encoder, files)
        assert again.unchanged == [str(f.absolute()) for f in files] and not again.added
        ids, vecs = cat.vectors()
        np.testing.assert_allclose(vecs, encoder.embed_files(files, progress=False), atol=1e-5)
        assert cat.singers() == {f"singer{s}": 2 for s in range(4)}
        top = cat.search(encoder.embed_file(files[3]), k=1)[0]
        assert top.path == str(files[3].absolute()) and top.score == pytest.approx(1.0, abs=1e-5)


def test_a_changed_file_is_re_embedded_in_place(tmp_path, encoder):
    path = write_audio(tmp_path / "a.wav", voiced_clip(200.0, 2.0, 0.8, seed=1))
    with Catalog.open_or_create(tmp_path / "c", encoder) as cat:
        first = cat.add(encoder, [path], singer="s").ids[0]
        write_audio(path, voiced_clip(260.0, 2.0, 1.6, seed=2))
        report = cat.add(encoder, [path], singer="s")
        assert report.replaced == [str(path.absolute())] and len(cat) == 1
        assert cat.records()[0].id != first
        np.testing.assert_allclose(cat.vectors()[1][0], encoder.embed_file(path), atol=1e-5)


def test_a_window_query_finds_where_in_a_long_recording_the_voice_is(tmp_path, encoder):
    win = encoder.window
    sr = encoder.sample_rate
    parts = [voiced_clip(f0, win, b, seed=s) for f0, b, s in [(150.0, 0.6, 1), (300.0, 2.0, 2), (220.0, 1.2, 3)]]
    long = write_audio(tmp_path / "long.wav", np.concatenate(parts))
    other = write_audio(tmp_path / "other.wav", voiced_clip(180.0, 3 * win, 0.9, seed=4))
    with Catalog.open_or_create(tmp_path / "c", encoder) as cat:
        ids = cat.add(encoder, [long, other], windows=True).ids
        from singerid.audio import load_audio

        query = l2_normalize(encoder.embed(load_audio(long)[int(win * sr): int(2 * win * sr)]))[0]
        hits = cat.search(query, k=2, windows=True)
        assert hits[0].record_id == ids[0] and hits[0].start == pytest.approx(win, abs=1e-3)
        assert hits[0].end == pytest.approx(2 * win, abs=1e-3)


def test_unreadable_files_stop_the_add_unless_skipped(tmp_path, encoder):
    good = write_audio(tmp_path / "good.wav", voiced_clip(200.0, 2.0, 0.8, seed=1))
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    with Catalog.open_or_create(tmp_path / "c", encoder) as cat:
        with pytest.raises(CatalogError, match="bad.wav.*--skip-unreadable"):
            cat.add(encoder, [good, bad])
        assert len(cat) == 1
        report = cat.add(encoder, [good, bad, tmp_path / "missing.wav"], skip_unreadable=True)
        assert [p for p, _ in report.skipped] == [str(bad.absolute()), str((tmp_path / "missing.wav").absolute())]
        assert report.unchanged == [str(good.absolute())]


def test_another_models_catalogue_is_refused(tmp_path, encoder):
    Catalog.create(tmp_path / "c", "someone-else", encoder.dim).close()
    with pytest.raises(CatalogError, match="another model"):
        Catalog.open_or_create(tmp_path / "c", encoder)


def test_adding_known_content_with_a_label_labels_it(tmp_path, encoder):
    path = write_audio(tmp_path / "a.wav", voiced_clip(200.0, 1.5, 0.8, seed=5))
    with Catalog.open_or_create(tmp_path / "c", encoder) as cat:
        cat.add(encoder, [path])
        report = cat.add(encoder, [path], singer="ann")
        assert report.relabelled == [str(path.absolute())] and not report.added
        assert len(cat) == 1 and cat.singers() == {"ann": 1}
        assert cat.add(encoder, [path], singer="ann").unchanged == [str(path.absolute())]
