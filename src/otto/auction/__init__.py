"""Auctions: contexts go to the orchestrators able to run them, cheapest first."""

from otto.auction.auctioneer import DEFAULT_WINDOW, Auction, Auctioneer, Bidder, Lot
from otto.auction.requirements import Capabilities, Requirements

__all__ = [
    "DEFAULT_WINDOW",
    "Auction",
    "Auctioneer",
    "Bidder",
    "Capabilities",
    "Lot",
    "Requirements",
]
