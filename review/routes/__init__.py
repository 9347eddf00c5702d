"""The desk's routes by area: each module holds one area's pages and JSON API."""
