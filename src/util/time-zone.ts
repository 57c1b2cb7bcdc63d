/**
 * UTC without ICU. The first use of Intl's time-zone data costs about 25 ms of every process that
 * makes it, and croner asks Intl at every step of a schedule in a named zone (40 ms to check the
 * schedules at start against 10 ms with a fixed offset). A CLI call that only asks the service
 * should not pay that, and on a server whose zone is UTC — the usual — nothing needs to: the
 * names below are UTC exactly (Intl names them all `UTC`), so they are handled by hand.
 */

/** Zone names that are UTC itself, as Intl shows them (its short name for each is `UTC`). */
const UTC_NAMES = new Set(['UTC', 'Etc/UTC', 'Etc/Universal', 'Universal', 'Etc/Zulu', 'Zulu', 'GMT', 'Etc/GMT']);

export function isUtc(timeZone: string): boolean {
  return UTC_NAMES.has(timeZone);
}

/** croner's options for a zone: a fixed offset for UTC (the same times, no Intl), else the zone. */
export function cronZone(timeZone: string): { utcOffset: number } | { timezone: string } {
  return isUtc(timeZone) ? { utcOffset: 0 } : { timezone: timeZone };
}
