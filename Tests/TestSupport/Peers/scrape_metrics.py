#!/usr/bin/env python3
"""Scrapes a Prometheus endpoint once and prints what prometheus_client's text parser made of it, as JSON:
{"status": 200, "contentType": "...", "families": {name: {"type": ..., "help": ..., "samples": [[name, labels,
value], ...]}}}. A body the parser rejects exits 1 with the parser's error on stderr.

Usage: scrape_metrics.py URL
"""
import json
import math
import sys
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def main():
    url = sys.argv[1]
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            status, content_type, body = response.status, response.headers.get("Content-Type"), response.read()
    except urllib.error.HTTPError as error:
        print(json.dumps({"status": error.code, "contentType": error.headers.get("Content-Type"), "families": {}}))
        return
    families = {}
    for family in text_string_to_metric_families(body.decode("utf-8")):
        families[family.name] = {
            "type": family.type,
            "help": family.documentation,
            "samples": [[s.name, s.labels, None if math.isnan(s.value) else s.value] for s in family.samples],
        }
    print(json.dumps({"status": status, "contentType": content_type, "families": families}))


if __name__ == "__main__":
    main()
