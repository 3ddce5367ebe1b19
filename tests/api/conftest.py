import pytest

from api_fakes import FakeRuntime, fake_model


@pytest.fixture
def fake_engine_factory(monkeypatch):
    """Engine over the test-double runtime and models (no real model is loaded)."""
    import saguaro.engine as eng
    import saguaro.models.pair as pair

    monkeypatch.setattr(eng, "_make_runtime", lambda t, d, c: FakeRuntime(t, d, c))
    monkeypatch.setattr(pair, "_check_tokenizers", lambda t, d: None)
    monkeypatch.setattr(FakeRuntime, "script", [128, 129, 130, 131])
    monkeypatch.setattr(FakeRuntime, "round_size", 3)

    def make(**kw):
        kw.setdefault("target", fake_model())
        kw.setdefault("draft", fake_model())
        return eng.Engine(**kw)

    return make
