"""The trimmed envelope code gives what the straightforward code gave."""

from __future__ import annotations

import json
import uuid

from hypothesis import given
from hypothesis import strategies as st

from mockxero import render

RECORDS = [{"OrganisationID": "7c5b3b8a-0000-4000-8000-000000000001", "Name": "Demo", "Flag": True}]


def test_envelope_ids_are_distinct_version_4_uuids() -> None:
    ids = [render.envelope_id() for _ in range(20000)]
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122


@given(provider=st.text(st.characters(exclude_categories=["Cs"])),
       now=st.floats(min_value=0, max_value=4e9, allow_nan=False),
       collection=st.sampled_from(["Organisations", "Contacts", "Invoices"]))
def test_json_envelope_head_is_the_dumped_dict(provider: str, now: float, collection: str) -> None:
    text = render.envelope_json(provider, now, collection, RECORDS, cache=False)
    data = json.loads(text)
    uuid.UUID(data["Id"])
    expected = json.dumps({"Id": data["Id"], "Status": "OK", "ProviderName": provider,
                           "DateTimeUTC": f"/Date({int(now * 1000)})/",
                           collection: [render.json_record(r) for r in RECORDS]},
                          ensure_ascii=False, separators=(",", ":"))
    assert text == expected


def test_xml_envelope_has_a_uuid_id() -> None:
    _, parsed = render.parse_xml(render.envelope_xml("Demo", 1764493200.5, "Organisations", RECORDS))
    uuid.UUID(parsed["Id"])
    assert parsed["Status"] == "OK" and parsed["ProviderName"] == "Demo"
