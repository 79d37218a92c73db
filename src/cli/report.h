/*
 * The ledger for people: what `status` and `costs` print, shared by those
 * commands and by the demo, which ends with both.
 */
#ifndef SPILLWAY_REPORT_H
#define SPILLWAY_REPORT_H

#include <stdint.h>
#include <stdio.h>

#include "config/config.h"
#include "ledger/ledger.h"

/* The settings that matter, the VMs alive, the statistics, today's money. */
void report_status(FILE *, const struct config *, struct ledger *, int64_t now);
/* Today against the budget, each VM of the last days with its cost, a table of days. */
void report_costs(FILE *, const struct config *, struct ledger *, int64_t now, int days);

#endif
