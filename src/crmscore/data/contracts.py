"""The canonical tables every source is mapped to, with their column types.

Only `transactions` is required. Types are DuckDB SQL types; every source value is cast to them, and a
value that cannot be cast is a contract violation (the row goes to quarantine, never silently away).

Timezone rule (one for all tables): timestamps become the local wall time of the config's `timezone`
(default UTC). A timezone-aware source value (a TIMESTAMPTZ column, or text with an offset such as
`2017-03-01T10:00:00+02:00`) is converted to that zone; a naive value is taken to be in that zone
already. A cutoff `as_of = 2017-10-01` means midnight at the start of that day in that zone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["id", "text", "timestamp", "number"]


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    kind: Kind
    required: bool
    description: str

    @property
    def sql_type(self) -> str:
        return {"id": "VARCHAR", "text": "VARCHAR", "timestamp": "TIMESTAMP", "number": "DOUBLE"}[self.kind]


@dataclass(frozen=True)
class TableContract:
    name: str
    columns: tuple[ColumnSpec, ...]
    unique_key: str | None = None
    keep_extra_columns: bool = False  # customers, attribute_history: other columns may be listed as attributes
    description: str = ""
    _by_name: dict[str, ColumnSpec] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._by_name.update({c.name: c for c in self.columns})

    def column(self, name: str) -> ColumnSpec | None:
        return self._by_name.get(name)

    @property
    def required(self) -> list[str]:
        return [c.name for c in self.columns if c.required]


CONTRACTS: dict[str, TableContract] = {
    "transactions": TableContract(
        "transactions",
        (
            ColumnSpec("customer_id", "id", True, "Who bought."),
            ColumnSpec("ts", "timestamp", True, "When (see the timezone rule)."),
            ColumnSpec("amount", "number", True, "Money paid for the line; refunds are negative."),
            ColumnSpec("order_id", "id", False, "Basket or order; lines of one order share it."),
            ColumnSpec("product_id", "id", False, "Product; joined to products for its category."),
            ColumnSpec("category", "text", False, "Product category (else taken from products)."),
            ColumnSpec("quantity", "number", False, "Units on the line."),
            ColumnSpec("channel", "text", False, "Sales channel (store, online, app...)."),
            ColumnSpec("store_id", "id", False, "Store or site."),
        ),
        description="One row per purchase line (required).",
    ),
    "products": TableContract(
        "products",
        (
            ColumnSpec("product_id", "id", True, "Product key."),
            ColumnSpec("category", "text", True, "Category used for category features."),
        ),
        unique_key="product_id",
        description="Product catalogue, joined to transactions that lack a category.",
    ),
    "customers": TableContract(
        "customers",
        (
            ColumnSpec("customer_id", "id", True, "Customer key."),
            ColumnSpec("signup_ts", "timestamp", False, "When the customer became known."),
        ),
        unique_key="customer_id",
        keep_extra_columns=True,
        description="One row per customer; other columns listed under `attributes` are static attribute features.",
    ),
    "attribute_history": TableContract(
        "attribute_history",
        (
            ColumnSpec("customer_id", "id", True, "Customer key."),
            ColumnSpec("valid_from", "timestamp", True, "From when the row's values hold (see the timezone rule)."),
        ),
        keep_extra_columns=True,
        description="Slowly changing attributes: one row per customer and change; joined point-in-time.",
    ),
    "events": TableContract(
        "events",
        (
            ColumnSpec("customer_id", "id", True, "Who."),
            ColumnSpec("ts", "timestamp", True, "When."),
            ColumnSpec("event_type", "text", True, "What (app_visit, login, coupon_use...)."),
        ),
        description="Non-purchase interactions.",
    ),
    "treatments": TableContract(
        "treatments",
        (
            ColumnSpec("customer_id", "id", True, "Who was in the campaign's experiment."),
            ColumnSpec("campaign", "text", True, "Campaign name (`crmscore train uplift --campaign <name>`)."),
            ColumnSpec("treated", "number", True, "1 = treated (contacted), 0 = control (held out at random)."),
            ColumnSpec("ts", "timestamp", True, "When the customer was treated or assigned to control; the outcome "
                                                "is read from purchases in the horizon after it."),
        ),
        description="Campaign experiments: one row per customer and campaign, treated or control (optional).",
    ),
}
