#!/usr/bin/env python3
"""Derive data/gce-schema.json from Google's discovery document.

The emulator validates request bodies against this file and the tests validate
every answer against it, so it must be exactly the discovery schemas, minus the
prose. Usage:

    tools/gen-gce-schema.py COMPUTE_V1_JSON SCHEDULING_LATEST_JSON EXTRA_JSON > data/gce-schema.json

COMPUTE_V1_JSON is compute.v1.json (revision 20230620), which predates the v1
scheduling fields maxRunDuration, terminationTime and onInstanceStopAction;
SCHEDULING_LATEST_JSON holds the newer Scheduling schema in a short form and is
merged in. EXTRA_JSON holds the schemas that no compute discovery document
carries: Google's error envelope, the OAuth token answer and the Cloud Billing
Catalog SKU list.
"""
import json
import sys

ROOTS = ["Instance", "InstanceList", "Operation", "OperationList", "MachineType",
         "Zone", "ZoneList", "Region", "InstancesSetLabelsRequest", "Project", "Image",
         "InstanceAggregatedList", "OperationAggregatedList", "MachineTypeAggregatedList",
         "SerialPortOutput", "Firewall", "Disk"]
DROP = ("description", "enumDescriptions", "note")


def strip(x):
    """Drop the prose; a property that happens to be named "description" stays."""
    if isinstance(x, dict):
        return {k: strip(v) for k, v in sorted(x.items())
                if not (k in DROP and not isinstance(v, dict))}
    if isinstance(x, list):
        return [strip(v) for v in x]
    return x


def refs(x, acc):
    if isinstance(x, dict):
        if "$ref" in x:
            acc.add(x["$ref"])
        for v in x.values():
            refs(v, acc)
    elif isinstance(x, list):
        for v in x:
            refs(v, acc)


def short_form(name, props):
    """scheduling-latest.json lists properties without the schema envelope."""
    return {"id": name, "type": "object", "properties": props}


def main():
    compute = json.load(open(sys.argv[1]))
    latest = json.load(open(sys.argv[2]))
    extra = json.load(open(sys.argv[3]))
    schemas = dict(compute["schemas"])
    for name, props in latest.items():
        if not name.startswith("_"):
            schemas[name] = short_form(name, props)
    # SchedulingOnInstanceStopAction is named but not spelled out there.
    schemas.setdefault("SchedulingOnInstanceStopAction", {
        "id": "SchedulingOnInstanceStopAction", "type": "object",
        "properties": {"discardLocalSsd": {"type": "boolean"}}})
    seen, todo = set(), list(ROOTS)
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        acc = set()
        refs(schemas[n], acc)
        todo += sorted(acc - seen)
    out = {n: strip(schemas[n]) for n in sorted(seen)}
    for n, s in extra.items():
        out[n] = s
    doc = {
        "source": "compute.v1.json revision %s, Scheduling from scheduling-latest.json, "
                  "extras hand-written from Google's public documentation" % compute["revision"],
        "schemas": out,
    }
    json.dump(doc, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
