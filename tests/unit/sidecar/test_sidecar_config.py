"""Settings: documented file schema, precedence, validation, run-time reload."""

import json
import re
from pathlib import Path

import pytest

from vigil.sidecar.config import (
    ConfigError,
    Settings,
    SettingsWatcher,
    load_settings,
    settings_from_mapping,
)

FULL = {
    "model": {"name": "wine", "version": "3"},
    "revision": "7f3c2a1",
    "role": "candidate",
    "protocol": "v1",
    "upstream": {"url": "http://127.0.0.1:9000", "readinessPath": "/ready", "timeoutSeconds": 5},
    "listen": {"host": "127.0.0.9", "port": 8001, "idleTimeoutSeconds": 30},
    "metrics": {"host": "127.0.0.9", "port": 9091},
    "limits": {"maxBodyBytes": 1000},
    "monitoring": {
        "referenceProfile": "/p.json",
        "maxFeatures": 5,
        "features": ["a"],
        "samplePercent": 50,
        "queueSize": 10,
        "predictionWindowSeconds": 60,
    },
    "shadow": {
        "target": "http://127.0.0.1:9100",
        "targetRevision": "9b1e4d0",
        "percent": 25,
        "tolerance": 0.01,
        "relativeTolerance": 0.1,
        "queueSize": 8,
        "timeoutSeconds": 2,
        "concurrency": 2,
    },
    "shutdown": {"delaySeconds": 1, "drainTimeoutSeconds": 3},
    "reloadIntervalSeconds": 0.5,
    "logLevel": "debug",
}


def test_every_documented_key_is_read():
    s = settings_from_mapping(FULL)
    assert (s.model_name, s.model_version, s.revision, s.role, s.protocol) == (
        "wine",
        "3",
        "7f3c2a1",
        "candidate",
        "v1",
    )
    assert (s.upstream_host, s.upstream_port, s.effective_readiness_path) == (
        "127.0.0.1",
        9000,
        "/ready",
    )
    assert (s.listen_host, s.listen_port, s.metrics_port, s.max_body_bytes) == (
        "127.0.0.9",
        8001,
        9091,
        1000,
    )
    assert (s.reference_profile, s.max_features, s.features, s.sample_percent) == (
        "/p.json",
        5,
        ("a",),
        50.0,
    )
    assert s.shadow.enabled and s.shadow.target_revision == "9b1e4d0" and s.shadow.percent == 25
    assert (s.shadow.tolerance, s.shadow.relative_tolerance) == (0.01, 0.1)
    assert (s.shutdown_delay_seconds, s.drain_timeout_seconds, s.log_level) == (1.0, 3.0, "debug")


def test_defaults_match_the_pod_contract():
    s = Settings()
    # "": every address of both families (an IPv6 pod IP too).
    assert (s.listen_host, s.listen_port, s.metrics_port) == ("", 8000, 9090)
    assert s.metrics_host == ""
    assert s.upstream == "http://127.0.0.1:8080" and s.protocol == "v2"
    assert s.effective_readiness_path == "/v2/health/ready"
    assert not s.shadow.enabled
    # Regression predictions agree within 5 % (plus a scale-aware absolute part).
    assert (s.shadow.tolerance, s.shadow.relative_tolerance) == (None, 0.05)


def test_null_means_default_and_shadow_null_disables():
    s = settings_from_mapping({"upstream": {"readinessPath": None}, "shadow": None})
    assert s.effective_readiness_path == "/v2/health/ready" and not s.shadow.enabled


@pytest.mark.parametrize(
    ("doc", "where"),
    [
        ({"modle": {}}, "modle"),
        ({"model": {"nmae": "x"}}, "model.nmae"),
        ({"protocol": "grpc"}, "protocol"),
        ({"role": "canary"}, "role"),
        ({"listen": {"port": "eighty"}}, "listen.port"),
        ({"upstream": {"url": "https://x:1"}}, "upstream.url"),
        # Accepted, the prefix was ignored: requests went to /v2/..., not /prefix/v2/...
        ({"upstream": {"url": "http://127.0.0.1:8080/prefix"}}, "upstream.url: .* no path"),
        ({"shadow": {"percent": 150, "target": "http://127.0.0.1:1"}}, "shadow.percent"),
        ({"shadow": {"bogus": 1}}, "shadow.bogus"),
        ({"shadow": {"tolerance": -0.1}}, "shadow.tolerance"),
        ({"shadow": {"relativeTolerance": -1}}, "shadow.relativeTolerance"),
        ({"shadow": {"relativeTolerance": "lots"}}, "shadow.relativeTolerance"),
        ({"monitoring": {"samplePercent": -1}}, "samplePercent"),
        ({"shadow": {"timeoutSeconds": float("nan")}}, "shadow.timeoutSeconds: must be a finite"),
        ({"shadow": {"timeoutSeconds": float("inf")}}, "shadow.timeoutSeconds: must be a finite"),
        ({"upstream": {"timeoutSeconds": 0}}, "upstream.timeoutSeconds: must be positive"),
        ({"reloadIntervalSeconds": -1}, "reloadIntervalSeconds: must be positive"),
        ({"shutdown": {"drainTimeoutSeconds": -1}}, "shutdown.drainTimeoutSeconds"),
    ],
)
def test_invalid_settings_name_the_offending_key(doc, where):
    with pytest.raises(ConfigError, match=where):
        settings_from_mapping(doc)


def test_cli_beats_env_beats_file(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("listen:\n  host: 127.0.0.2\n  port: 8001\nmetrics:\n  port: 9001\n")
    env = {"VIGIL_LISTEN_PORT": "8002", "VIGIL_METRICS_PORT": "9002"}
    s = load_settings(str(path), {"metrics_port": 9003}, env)
    assert (s.listen_host, s.listen_port, s.metrics_port) == ("127.0.0.2", 8002, 9003)
    s2 = load_settings(None, {}, {"VIGIL_SIDECAR_CONFIG": str(path)})
    assert s2.listen_port == 8001 and s2.config_path == str(path)


def test_watcher_applies_runtime_keys_and_ignores_static_ones(tmp_path, caplog):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"revision": "a"}))
    applied, errors = [], []
    s = load_settings(str(path), {}, {})
    watcher = SettingsWatcher(s, applied.append, errors.append)
    assert watcher.check() is False
    path.write_text(
        json.dumps(
            {
                "revision": "b",
                "shadow": {"target": "http://127.0.0.1:1", "targetRevision": "c2", "percent": 10},
            }
        )
    )
    assert watcher.check() is True
    assert applied[-1].shadow.target_revision == "c2" and applied[-1].revision == "a"
    assert "restart" in caplog.text and "revision" in caplog.text
    path.write_text("{broken")
    assert watcher.check() is False and errors and watcher.settings.shadow.percent == 10


def test_watcher_follows_a_configmap_style_symlink_swap(tmp_path):
    """Kubernetes updates mounts by re-pointing ..data; content is what counts."""
    for name, pct in (("v1", 10), ("v2", 20)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "s.json").write_text(
            json.dumps({"shadow": {"target": "http://127.0.0.1:1", "percent": pct}})
        )
    (tmp_path / "..data").symlink_to("v1")
    (tmp_path / "s.json").symlink_to("..data/s.json")
    applied = []
    watcher = SettingsWatcher(
        load_settings(str(tmp_path / "s.json"), {}, {}), applied.append, lambda m: None
    )
    (tmp_path / "..tmp").symlink_to("v2")
    (tmp_path / "..tmp").rename(tmp_path / "..data")
    assert watcher.check() and applied[-1].shadow.percent == 20


def test_a_flag_or_environment_log_level_outlives_a_reload(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"revision": "a", "logLevel": "warning"}))
    applied = []
    s = load_settings(str(path), {}, {"VIGIL_LOG_LEVEL": "debug"})
    assert s.log_level == "debug" and s.pinned == {"log_level"}
    watcher = SettingsWatcher(s, applied.append, lambda m: None)
    path.write_text(json.dumps({"revision": "a", "logLevel": "error", "shadow": {"percent": 5}}))
    assert watcher.check() is True
    assert (applied[-1].log_level, applied[-1].shadow.percent) == ("debug", 5)


def test_a_file_changed_while_the_sidecar_started_is_applied_at_the_first_poll(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"revision": "a"}))
    applied = []
    s = load_settings(str(path), {}, {})
    path.write_text(
        json.dumps({"revision": "a", "shadow": {"target": "http://127.0.0.1:1", "percent": 5}})
    )
    watcher = SettingsWatcher(s, applied.append, lambda m: None)
    assert watcher.check() is True and applied[-1].shadow.enabled
    assert watcher.check() is False and len(applied) == 1


def test_an_unreadable_file_is_reported_once_until_it_is_back(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"revision": "a"}))
    applied, errors = [], []
    watcher = SettingsWatcher(load_settings(str(path), {}, {}), applied.append, errors.append)
    assert watcher.check() is False and errors == []
    path.unlink()
    assert watcher.check() is False and watcher.check() is False
    assert len(errors) == 1 and "cannot read the settings file" in errors[0]
    path.write_text(
        json.dumps({"revision": "a", "shadow": {"target": "http://127.0.0.1:1", "percent": 5}})
    )
    assert watcher.check() is True and applied[-1].shadow.enabled
    path.unlink()
    assert watcher.check() is False and len(errors) == 2


def test_static_changes_are_told_against_what_runs(tmp_path, caplog):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"revision": "a", "listen": {"port": 8100}}))
    s = load_settings(str(path), {"listen_port": 8200}, {})
    watcher = SettingsWatcher(s, lambda _: None, lambda m: None)
    assert watcher.check() is False and "restart" not in caplog.text  # nothing changed
    path.write_text(json.dumps({"revision": "a", "listen": {"port": 8101}}))
    watcher.check()
    assert "restart" not in caplog.text  # the flag sets the port, whatever the file says
    path.write_text(json.dumps({"revision": "b", "listen": {"port": 8101}}))
    watcher.check()
    assert "take effect after a restart: revision" in caplog.text


SHADOWED = "revision: a\nshadow:\n  target: http://127.0.0.1:1\n  percent: %d\n"


class TestAFileBeingWritten:
    """A writer that truncates, then writes (not a ConfigMap's symlink swap) shows the file
    empty for a moment: that is not applied, and what is applied is what was hashed."""

    def test_an_empty_file_keeps_the_settings_that_run_until_content_comes(self, tmp_path, caplog):
        path = tmp_path / "s.yaml"
        path.write_text(SHADOWED % 50)
        applied, errors = [], []
        watcher = SettingsWatcher(load_settings(str(path), {}, {}), applied.append, errors.append)
        path.write_text("")
        assert watcher.check() is False and watcher.check() is False
        assert watcher.settings.shadow.percent == 50 and applied == [] and errors == []
        assert caplog.text.count("is empty") == 1  # logged once, read again at each poll
        path.write_text(SHADOWED % 20)
        assert watcher.check() is True and applied[-1].shadow.percent == 20
        path.write_text("")
        assert watcher.check() is False and watcher.settings.shadow.percent == 20
        assert caplog.text.count("is empty") == 2

    def test_the_settings_applied_are_the_bytes_hashed(self, tmp_path, monkeypatch):
        path = tmp_path / "s.yaml"
        path.write_text("revision: a\n")
        applied: list[Settings] = []
        watcher = SettingsWatcher(load_settings(str(path), {}, {}), applied.append, lambda m: None)
        path.write_text(SHADOWED % 50)
        read_bytes = Path.read_bytes

        def read_then_truncate(self: Path) -> bytes:
            data = read_bytes(self)
            if self == path:
                path.write_text("")  # the writer truncates right after this read
            return data

        monkeypatch.setattr(Path, "read_bytes", read_then_truncate)
        assert watcher.check() is True and applied[-1].shadow.percent == 50
        assert watcher.check() is False and watcher.settings.shadow.percent == 50


class TestUrlPorts:
    """A port out of range stops the sidecar at start (exit 2): let through, every request
    would wait out its timeout for a 504, and readiness fail on 'Port out of range'."""

    @pytest.mark.parametrize("url", ["http://127.0.0.1:80800", "http://m:0", "http://m:x1"])
    @pytest.mark.parametrize(
        ("key", "doc"),
        [
            ("upstream.url", lambda url: {"upstream": {"url": url}}),
            ("shadow.target", lambda url: {"shadow": {"target": url}}),
        ],
    )
    def test_a_bad_port_is_refused(self, key, doc, url):
        with pytest.raises(ConfigError, match=re.escape(key)):
            settings_from_mapping(doc(url))

    def test_from_the_environment_too(self):
        # main() answers a ConfigError with exit status 2.
        with pytest.raises(ConfigError, match=r"upstream\.url"):
            load_settings(None, {}, {"VIGIL_UPSTREAM": "http://127.0.0.1:80800"})

    @pytest.mark.parametrize("url", ["http://127.0.0.1:65535", "http://[::1]:1", "http://m"])
    def test_ports_in_range_or_left_out_pass(self, url):
        assert settings_from_mapping({"upstream": {"url": url}}).upstream == url


def test_the_settings_sample_gives_the_default_shadow_percent_of_the_code():
    # The sample's shadow block is an example; its percent read as a default of 100,
    # while a file without it copies nothing.
    text = (Path(__file__).resolve().parents[3] / "docs" / "sidecar.md").read_text()
    sample = text[text.index("## Settings file") :]
    line = re.search(r"^  percent: .*\n(?:\s+#.*\n)*", sample, flags=re.MULTILINE)
    assert line is not None
    default = settings_from_mapping({"shadow": {"target": "http://t:80"}}).shadow.percent
    assert default == 0
    assert "default 0 " in " ".join(line.group(0).replace("#", " ").split()) + " "
