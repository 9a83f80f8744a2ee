"""The one settings object: every DESIGN.md §5 variable is read, and bad values name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.core.errors import ConfigurationError
from pipeline.settings import Settings

# One valid, non-default value per DESIGN.md §5 variable (DAGSTER_PG_* are dagster.yaml's).
NON_DEFAULT = {
    "MINIO_ENDPOINT_URL": "http://127.0.0.1:9000", "MINIO_ACCESS_KEY": "ak", "MINIO_SECRET_KEY": "sk",
    "MINIO_REGION": "eu-west-1", "IMAGERY_DATA_DIR": "/srv/imagery", "IMAGERY_BUCKET": "up",
    "HEATMAP_BUCKET": "maps", "REPORT_BUCKET": "rep", "DASK_SCHEDULER_ADDRESS": "tcp://s:8786",
    "IMAGERY_COG_COMPRESSION": "lerc", "IMAGERY_COG_MAX_Z_ERROR": "0.0001",
    "IMAGERY_INDICES_FILE": "/etc/imagery/indices.yaml", "IMAGERY_MZ_CLASSES": "5",
    "IMAGERY_MZ_MIN_HA": "0.2", "IMAGERY_CANOPY_NDVI": "0.6", "IMAGERY_AREA_UNIT": "acre",
    "IMAGERY_API_TOKENS_SHA256": "a" * 64 + "," + "b" * 64, "IMAGERY_API_HOST": "0.0.0.0",
    "IMAGERY_API_PORT": "9090",
}


def test_settings__defaults_are_design_md_defaults() -> None:
    s = Settings.from_env({})
    assert (s.endpoint_url, s.region, s.data_dir) == (None, "us-east-1", Path("./data"))
    assert (s.imagery_bucket, s.heatmap_bucket, s.report_bucket) == (
        "imagery-uploads", "analysis-heatmaps", "reports")
    assert (s.cog_compression, s.cog_max_z_error, s.indices_file) == ("zstd", None, None)
    assert (s.mz_classes, s.mz_min_ha, s.canopy_ndvi, s.area_unit) == (3, 0.05, 0.5, "ha")
    assert (s.api_tokens_sha256, s.api_host, s.api_port) == ((), "127.0.0.1", 8080)


# Two environments differing in one variable only (both valid), per variable.
ALTERNATIVE = {name: {name: value} for name, value in {
    "MINIO_ENDPOINT_URL": "http://other:9000", "MINIO_ACCESS_KEY": "ak2", "MINIO_SECRET_KEY": "sk2",
    "MINIO_REGION": "us-west-2", "IMAGERY_DATA_DIR": "/data", "IMAGERY_BUCKET": "up2",
    "HEATMAP_BUCKET": "maps2", "REPORT_BUCKET": "rep2", "DASK_SCHEDULER_ADDRESS": "",
    "IMAGERY_COG_MAX_Z_ERROR": "0.001", "IMAGERY_INDICES_FILE": "", "IMAGERY_MZ_CLASSES": "4",
    "IMAGERY_MZ_MIN_HA": "0.1", "IMAGERY_CANOPY_NDVI": "0.4", "IMAGERY_AREA_UNIT": "ha",
    "IMAGERY_API_TOKENS_SHA256": "c" * 64, "IMAGERY_API_HOST": "127.0.0.1", "IMAGERY_API_PORT": "8081",
}.items()}
COMPRESSION = ({"IMAGERY_COG_COMPRESSION": "zstd", "IMAGERY_COG_MAX_Z_ERROR": ""},
               {"IMAGERY_COG_COMPRESSION": "deflate", "IMAGERY_COG_MAX_Z_ERROR": ""})


@pytest.mark.parametrize("name", sorted(NON_DEFAULT))
def test_settings__every_design_variable_is_read(name: str) -> None:
    if name == "IMAGERY_COG_COMPRESSION":
        one, other = ({**NON_DEFAULT, **c} for c in COMPRESSION)
    else:
        one, other = NON_DEFAULT, {**NON_DEFAULT, **ALTERNATIVE[name]}
    assert Settings.from_env(one) != Settings.from_env(other), name


def test_settings__all_values_parse_together() -> None:
    s = Settings.from_env(NON_DEFAULT)
    assert s.cog_max_z_error == 0.0001 and s.api_port == 9090 and s.area_unit == "acre"
    assert s.api_tokens_sha256 == ("a" * 64, "b" * 64)


@pytest.mark.parametrize(("env", "variable"), [
    ({"IMAGERY_COG_COMPRESSION": "lz4"}, "IMAGERY_COG_COMPRESSION"),
    ({"IMAGERY_COG_COMPRESSION": "lerc"}, "IMAGERY_COG_MAX_Z_ERROR"),
    ({"IMAGERY_COG_MAX_Z_ERROR": "0.001"}, "IMAGERY_COG_MAX_Z_ERROR"),
    ({"IMAGERY_MZ_CLASSES": "three"}, "IMAGERY_MZ_CLASSES"),
    ({"IMAGERY_MZ_CLASSES": "1"}, "IMAGERY_MZ_CLASSES"),
    ({"IMAGERY_MZ_MIN_HA": "-1"}, "IMAGERY_MZ_MIN_HA"),
    ({"IMAGERY_CANOPY_NDVI": "2"}, "IMAGERY_CANOPY_NDVI"),
    ({"IMAGERY_AREA_UNIT": "km2"}, "IMAGERY_AREA_UNIT"),
    ({"IMAGERY_API_TOKENS_SHA256": "my-secret-token"}, "IMAGERY_API_TOKENS_SHA256"),
    ({"IMAGERY_API_PORT": "http"}, "IMAGERY_API_PORT"),
    ({"IMAGERY_API_PORT": "65536"}, "IMAGERY_API_PORT"),
    ({"IMAGERY_API_PORT": "99999"}, "IMAGERY_API_PORT"),
    ({"SMTP_PORT": "70000"}, "SMTP_PORT"),
    ({"IMAGERY_API_PORT": "9" * 400}, "IMAGERY_API_PORT"),
    ({"IMAGERY_MZ_MIN_HA": "nan"}, "IMAGERY_MZ_MIN_HA"),
    ({"IMAGERY_MZ_MIN_HA": "inf"}, "IMAGERY_MZ_MIN_HA"),
    ({"IMAGERY_CANOPY_NDVI": "nan"}, "IMAGERY_CANOPY_NDVI"),
    ({"IMAGERY_MIN_VALID_FRACTION": "NaN"}, "IMAGERY_MIN_VALID_FRACTION"),
    ({"IMAGERY_S3_READ_TIMEOUT_S": "inf"}, "IMAGERY_S3_READ_TIMEOUT_S"),
    ({"IMAGERY_COG_COMPRESSION": "lerc", "IMAGERY_COG_MAX_Z_ERROR": "-inf"},
     "IMAGERY_COG_MAX_Z_ERROR"),
    ({"IMAGERY_COG_COMPRESSION": "lerc", "IMAGERY_COG_MAX_Z_ERROR": "nan"},
     "IMAGERY_COG_MAX_Z_ERROR"),
    ({"MINIO_ENDPOINT_URL": "http://s3:9000"}, "MINIO_ENDPOINT_URL"),
    ({"WEBHOOK_URLS": "https://a.example/h"}, "WEBHOOK_URLS"),
    ({"SMTP_HOST": "mail", "SMTP_TO": "a@x"}, "SMTP_FROM"),
    ({"SMTP_STARTTLS": "perhaps"}, "SMTP_STARTTLS"),
    ({"IMAGERY_SENSOR_INTERVAL_S": "0"}, "IMAGERY_SENSOR_INTERVAL_S"),
])
def test_settings__unusable_value_names_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env(env)
    assert info.value.setting == variable and str(info.value).startswith(f"{variable}: ")


def test_settings__port_bounds_are_inclusive() -> None:
    assert Settings.from_env({"IMAGERY_API_PORT": "65535"}).api_port == 65535
    assert Settings.from_env({"IMAGERY_API_PORT": "1"}).api_port == 1


def test_settings__secrets_stay_out_of_repr() -> None:
    s = Settings.from_env({**NON_DEFAULT, "WEBHOOK_URLS": "https://a.example/h",
                           "WEBHOOK_SECRET": "hook-secret-value", "SMTP_PASSWORD": "mail-pass"})
    text = repr(s)
    assert "sk" not in text.split("access_key='ak'")[1].split(",")[0]
    for secret in ("hook-secret-value", "mail-pass", "a" * 64):
        assert secret not in text
