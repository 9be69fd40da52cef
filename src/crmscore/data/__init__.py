"""Data contracts, loading and validation of customer data."""

from crmscore.data.contracts import CONTRACTS, ColumnSpec, TableContract
from crmscore.data.loader import CustomerData, load_customer_data

__all__ = ["CONTRACTS", "ColumnSpec", "TableContract", "CustomerData", "load_customer_data"]
