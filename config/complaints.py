"""Configuration of complaints and outside reports (投诉举报): the public page's limits, the triage routing rule and
the 96119 hotline gateway.

Mounted on FirelinkConfig as `complaints:` (model ComplaintsConfig). The defaults suit a county: a villager behind
a carrier's shared address can still report, a script cannot flood the queue (docs/complaints.md, "Limits").
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HotlineConfig(_Model):
    """The 96119 fire-rescue hotline's gateway, which forwards the complaints it takes (HTTP, signed; or MQTT)."""

    secret: SecretStr | None = Field(
        None, title="Signing secret",
        description="Shared secret of the HMAC-SHA256 signature (X-Firelink-Signature: sha256=<hex> over the exact "
                    "body) of POST /api/hotline/complaints; unset: that route answers 403. Never logged.")
    name: str = Field("96119", min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_.\-]+$", title="Name",
                      description="How the record names the gateway (the actor of its complaints).")
    mqtt: bool = Field(True, title="MQTT intake",
                       description="Take complaints from {topic_prefix}/hotline/complaints too (restrict that "
                                   "topic to the gateway's account in the broker's ACL).")


class ComplaintsConfig(_Model):
    per_address_per_hour: int = Field(
        20, ge=1, le=100_000, title="Reports per address per hour",
        description="Public reports taken from one client address in any sliding hour (a village behind one "
                    "carrier address shares it); more are answered 429 with Retry-After.")
    per_device_per_hour: int = Field(
        5, ge=1, le=100_000, title="Reports per device per hour",
        description="Public reports from one browser (its reporter cookie) or one assistant account in any "
                    "sliding hour.")
    lookups_per_address_per_hour: int = Field(
        120, ge=1, le=1_000_000, title="Lookups per address per hour",
        description="Receipt status lookups and unit-name lookups from one client address in any sliding hour "
                    "(receipts cannot be enumerated).")
    min_description_chars: int = Field(4, ge=1, le=100, title="Shortest description",
                                       description="Characters a description needs at least.")
    max_description_chars: int = Field(1000, ge=10, le=4000, title="Longest description",
                                       description="Characters a description may have at most.")
    max_photo_bytes: int = Field(8 * 1024 * 1024, ge=64 * 1024, le=64 * 1024 * 1024, title="Largest photo",
                                 description="Bytes of the uploaded photo; a larger one is answered 413.")
    max_photo_pixels: int = Field(
        50_000_000, ge=100_000, le=200_000_000, title="Most photo pixels",
        description="Width × height a photo may declare (decompression bombs are refused before decoding).")
    photo_max_side: int = Field(2048, ge=320, le=8192, title="Stored photo size",
                                description="Longest side, in pixels, of the re-encoded JPEG that is stored.")
    route_within_m: float = Field(
        1000.0, ge=0, le=100_000, title="Routing distance",
        description="A report without a unit goes to the station of the nearest unit within this many metres of "
                    "its position; farther (or without a position) to the default station (station.id).")
    hotline: HotlineConfig = Field(default_factory=HotlineConfig, title="Hotline", description="96119 gateway.")
