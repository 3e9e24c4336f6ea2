"""A time-of-use tariff on the project page and a time-of-use bill's items on the bills
page, through the real app."""

from __future__ import annotations

from sqlalchemy import Engine

from meterhub.billing.tariff_store import set_tariff
from meterhub.billing.tou import TouTariff
from meterhub.registry.channels import DeviceType
from tests.web.conftest import Dashboard
from tests.web.test_projects import bill_months, build_estate, table

TOU = {
    "kind": "tou",
    "periods": [
        {"name": "peak", "price": "0.8", "windows": [{"from": "08:00", "to": "22:00"}]},
        {
            "name": "valley",
            "price": "0.40",
            "windows": [{"days": "all", "from": "22:00", "to": "08:00"}],
        },
    ],
    "tiers": [{"up_to": "100", "price": "0"}, {"up_to": None, "price": "0.05"}],
    "fixed_charge": "5",
}


def test_tou_tariff_and_bill_items_are_shown(dashboard: Dashboard, engine: Engine) -> None:
    estate = build_estate(engine, 2)
    with engine.begin() as conn:
        tariff = TouTariff.from_json(TOU)
        set_tariff(conn, estate.project, DeviceType.ELECTRICITY, tariff)
    bills = bill_months(engine, estate, range(2, 3))
    power = next(bill for bill in bills if bill.items)
    assert [item.period for item in power.items] == ["peak", "valley"]
    page = dashboard.get(f"/projects/{estate.project}")
    assert table(page.text, "tariff-table")[0] == [
        "electricity",
        "—",
        "peak: 0.80 CNY/kWh (all 08:00-22:00) valley: 0.40 CNY/kWh (all 22:00-08:00) "
        "plus 0.05 CNY/kWh for units of the bill above 100",
        "5.00 CNY",
    ]
    rows = table(dashboard.get(f"/projects/{estate.project}/bills").text, "bills")
    items = [row for row in rows if row[1] in ("peak", "valley")]
    assert [row[1] for row in items] == ["peak", "valley"]
    peak = power.items[0]
    assert items[0][2:7] == [
        f"{peak.start_register:,.3f}".replace(",", "\u2009"),
        f"{peak.end_register:,.3f}".replace(",", "\u2009"),
        "\u00d7 0.80",
        f"{peak.consumption:.3f} kWh",
        f"{peak.charge:.2f} CNY",
    ]
