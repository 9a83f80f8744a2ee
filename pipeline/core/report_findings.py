"""The report's first page as data: each field's standing, the sentences that say which fields need
attention and why, and the batch facts a reader needs to trust the numbers.

Everything here is computed from the report model (`Summary`, i.e. summary.json, and the
`ReportContext` the PDF gets besides), never typed by hand: a sentence is a template filled with
numbers. The rules that flag a field are the constants below and are printed under the sentences.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from pipeline.core.summary import ReportContext, Summary, ZoneSummary
from pipeline.core.units import area_in

VIGOUR_INDICES = ("ndvi", "vari")  # the vigour measure: NDVI, or VARI for a batch without NIR
LOW_CLASSES = ("bare", "stressed")  # NDVI classes (DESIGN.md §3) that count as "stressed or bare"
ATTENTION_SHARE = 0.25  # a field with at least this share of stressed or bare pixels is flagged
ATTENTION_DROP = 0.05  # ... or whose mean fell by at least this much since the previous flight
STEADY = 0.005  # a change below this (in index units) is "unchanged" in a sentence
MAX_SENTENCES = 5


@dataclass(frozen=True)
class FieldFinding:
    number: int  # position in summary.json `zones`, 1-based: the field's number on every map
    name: str
    area_m2: float
    flown: bool
    vigour: float | None = None  # mean of the vigour index
    low_share: float | None = None  # stressed + bare share of the field's valid pixels
    canopy_cover: float | None = None
    change: float | None = None  # change of the vigour index mean since the previous flight
    hottest_c: float | None = None
    hotspot: bool = False  # hottest_c at or above the batch's hotspot threshold
    rate: float | None = None  # area-weighted mean prescription rate over the field's zones
    reasons: tuple[str, ...] = ()  # why the field is flagged; () when it is not


@dataclass(frozen=True)
class Findings:
    index: str | None  # "ndvi", "vari", or None (a thermal-only batch)
    fields: list[FieldFinding]  # ranked: lowest vigour first (hottest first without an index)
    previous: datetime | None  # the previous flight's capture time, when change is comparable
    rate_unit: str | None  # the prescription's unit, when there is one
    sentences: list[str]
    rule: str  # the flagging rule, in words
    facts: list[tuple[str, str]] = field(default_factory=list)

    @property
    def has_change(self) -> bool:
        return self.previous is not None and any(f.change is not None for f in self.fields)


def vigour_index(summary: Summary) -> str | None:
    """NDVI when the batch has it, else VARI (RGB only), else None (thermal only)."""
    return next((i for i in VIGOUR_INDICES if i in summary.indices), None)


def area_text(area_m2: float | None, unit: str) -> str:
    """An area in the report's unit (IMAGERY_AREA_UNIT: ha or acre); 4 decimals below 1."""
    if area_m2 is None:
        return "–"
    value = area_in(area_m2=area_m2, unit=unit)
    return f"{value:,.4f}" if value < 1 else f"{value:,.2f}"


def day_text(when: datetime, *, reference: datetime | None = None) -> str:
    """"14 June", with the year when it differs from `reference`'s (or without a reference)."""
    text = f"{when.day} {when:%B}"
    return text if reference is not None and reference.year == when.year else f"{text} {when.year}"


def _pct(value: float) -> str:
    return f"{round(value * 100):d} %"


def _low_share(zone: ZoneSummary, index: str) -> float | None:
    stats = zone.indices.get(index)
    classes = [c for c in (stats.classes if stats else []) if c.name in LOW_CLASSES]
    if not classes or any(c.fraction is None for c in classes):
        return None
    return sum(c.fraction for c in classes)


def _rates(context: ReportContext) -> dict[str, float]:
    """Each field's area-weighted mean rate over its management-zone parts that have a rate."""
    totals: dict[str, list[float]] = {}
    for part in context.zone_parts:
        if part.field is not None and part.rate is not None and part.area_m2 > 0:
            t = totals.setdefault(part.field, [0.0, 0.0])
            t[0] += part.rate * part.area_m2
            t[1] += part.area_m2
    return {name: s / a for name, (s, a) in totals.items() if a > 0}


def _field(number: int, zone: ZoneSummary, *, summary: Summary, index: str | None,
           comparable: bool, rates: dict[str, float]) -> FieldFinding:
    stats = zone.indices.get(index) if index else None
    vigour = stats.mean if stats else None
    thermal_max = zone.thermal.max_c if zone.thermal else None
    flown = zone.area_m2 > 0 and (vigour is not None or thermal_max is not None)
    change = None
    if comparable and index and zone.change and index in zone.change:
        change = zone.change[index].mean
    threshold = summary.thermal.hotspot_threshold_c if summary.thermal else None
    hotspot = thermal_max is not None and threshold is not None and thermal_max >= threshold
    low = _low_share(zone, index) if index else None
    reasons = []
    if low is not None and low >= ATTENTION_SHARE:
        reasons.append("low_share")
    if change is not None and change <= -ATTENTION_DROP:
        reasons.append("drop")
    if hotspot:
        reasons.append("hotspot")
    return FieldFinding(number=number, name=zone.name, area_m2=zone.area_m2, flown=flown,
                        vigour=vigour, low_share=low, canopy_cover=zone.canopy_cover,
                        change=change, hottest_c=thermal_max, hotspot=hotspot,
                        rate=rates.get(zone.name), reasons=tuple(reasons) if flown else ())


def _rank(fields: Sequence[FieldFinding], index: str | None) -> list[FieldFinding]:
    def key(f: FieldFinding) -> tuple:
        if index is None:  # thermal only: hottest first
            return (not f.flown, f.hottest_c is None, -(f.hottest_c or 0.0), f.number)
        return (not f.flown, f.vigour is None, f.vigour or 0.0, f.number)

    return sorted(fields, key=key)


def sentence(f: FieldFinding, *, index: str | None, previous: datetime | None,
             reference: datetime | None) -> str:
    """One field in words, e.g. "South field: 31 % stressed or bare (mean NDVI 0.41), down 0.12
    NDVI since 14 June, hottest spot 38.7 °C."; every figure from `f`. The stressed share leads
    when it flags the field (or nothing does), the mean index otherwise."""
    label = index.upper() if index else ""
    parts = []
    if f.low_share is not None and (f.low_share >= ATTENTION_SHARE or not f.reasons):
        parts.append(f"{_pct(f.low_share)} stressed or bare"
                     + (f" (mean {label} {f.vigour:.2f})" if f.vigour is not None else ""))
    elif f.vigour is not None:
        parts.append(f"mean {label} {f.vigour:.2f}")
    if f.change is not None and previous is not None:
        since = f"since {day_text(previous, reference=reference)}"
        if abs(f.change) < STEADY:
            parts.append(f"{label} unchanged {since}")
        else:
            parts.append(f"{'down' if f.change < 0 else 'up'} {abs(f.change):.2f} {label} {since}")
    if f.hottest_c is not None and (f.hotspot or index is None):
        parts.append(f"hottest spot {f.hottest_c:.1f} °C")
    return f"{f.name}: {', '.join(parts) or 'no statistics'}."


def _rule(index: str | None, summary: Summary, previous: datetime | None) -> str:
    rules = []
    label = index.upper() if index else ""
    if index == "ndvi":
        rules.append(f"at least {_pct(ATTENTION_SHARE)} of its valid pixels stressed or bare "
                     "(NDVI below 0.4)")
    if previous is not None and index:
        rules.append(f"its mean {label} down by {ATTENTION_DROP:.2f} or more since the previous "
                     "flight")
    if summary.thermal is not None and summary.thermal.hotspot_threshold_c is not None:
        rules.append(f"a spot at or above the hotspot threshold "
                     f"({summary.thermal.hotspot_threshold_c:.1f} °C)")
    if not rules:
        return "No rule flags a field in this batch (no NDVI classes, no change, no thermal)."
    return "A field is flagged when it has " + "; or ".join(rules) + "."


def build_findings(*, summary: Summary, context: ReportContext) -> Findings:
    """The first page's model: ranked fields, sentences, the rule and the batch facts."""
    index = vigour_index(summary)
    site = summary.site
    comparable = bool(site and site.comparable and site.previous_batch_id
                      and index in summary.change)
    previous = site.previous_captured_at if comparable else None
    rates = _rates(context)
    fields = _rank([_field(n, z, summary=summary, index=index, comparable=comparable,
                           rates=rates)
                    for n, z in enumerate(summary.zones, start=1)], index)
    reference = context.captured_at
    flagged = [f for f in fields if f.reasons]
    sentences = [sentence(f, index=index, previous=previous, reference=reference)
                 for f in flagged[:MAX_SENTENCES]]
    if len(flagged) > MAX_SENTENCES:
        sentences.append(f"{len(flagged) - MAX_SENTENCES} more flagged field(s) in the table "
                         "below.")
    flown = [f for f in fields if f.flown]
    if not flagged and flown:
        lowest = flown[0]
        sentences.append("No field is flagged by the rule below. "
                         + ("Lowest vigour: " if index else "Hottest: ")
                         + sentence(lowest, index=index, previous=previous, reference=reference))
    not_flown = [f.name for f in fields if not f.flown]
    if not_flown:
        sentences.append(f"Not flown in this batch ({len(not_flown)} without imagery, no "
                         f"statistics): {', '.join(not_flown)}.")
    mz = summary.management_zones
    return Findings(index=index, fields=fields, previous=previous,
                    rate_unit=mz.unit if mz and rates else None, sentences=sentences,
                    rule=_rule(index, summary, previous),
                    facts=batch_facts(summary=summary, context=context, index=index))


def batch_facts(*, summary: Summary, context: ReportContext,
                index: str | None) -> list[tuple[str, str]]:
    """What a reader needs to trust the numbers: when, how much was flown and valid, what was
    left out, and whether the comparison with the previous flight holds."""
    unit = context.area_unit
    grid = summary.grid
    extent_m2 = grid.width * grid.height * grid.pixel_size[0] * grid.pixel_size[1]
    facts = [("Captured", f"{day_text(context.captured_at)}, {context.captured_at:%H:%M} UTC"
              if context.captured_at else "unknown (the manifest gives no captured_at)")]
    stats = summary.indices.get(index) if index else None
    if stats is None and summary.indices:
        stats = max(summary.indices.values(), key=lambda s: s.valid_area_m2)
    if stats is not None:
        facts.append(("Area flown", f"{area_text(stats.valid_area_m2, unit)} {unit} with valid "
                      f"data (grid extent {area_text(extent_m2, unit)} {unit})"))
        facts.append(("Valid data", f"{stats.valid_fraction * 100:.1f} % of the grid's pixels"
                      + (f" ({index.upper()})" if index else "")))
    ignored = summary.ignored_images
    facts.append(("Images ignored", "none" if not ignored else f"{len(ignored)}: " + "; ".join(
        f"{i.path} ({i.reason})" for i in ignored)))
    masked = {n: c for n, c in sorted(context.masked_values.items()) if c}
    facts.append(("Values masked", "none" if not masked else
                  f"{sum(masked.values()):,} band values treated as no data (not a reflectance in "
                  "[-1, 10]): " + "; ".join(f"{n} {c:,} values" for n, c in masked.items())))
    facts.append(("Compared with", _comparability(summary, reference=context.captured_at)))
    return facts


def _comparability(summary: Summary, *, reference: datetime | None) -> str:
    site = summary.site
    if site is None:
        return "nothing: the batch belongs to no site (manifest site_id), so no change is shown"
    if site.previous_batch_id is None:
        return f"nothing yet: the first flight of site {site.site_id}"
    when = (day_text(site.previous_captured_at, reference=reference)
            if site.previous_captured_at else "unknown date")
    if site.comparable:
        return f"the previous flight {site.previous_batch_id} ({when}): comparable"
    reasons = "; ".join(site.reasons) or "no reason given"
    return (f"the previous flight {site.previous_batch_id} ({when}): NOT comparable, so no "
            f"change is shown ({reasons})")
