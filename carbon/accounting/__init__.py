"""Carbon accounting: the sustainability ledger, emissions of finished pods, reports.

Ledger (append-only, idempotent keys, SQLite file or PostgreSQL database):
  records      record types (placement, lifecycle, gate, usage), one struct per table
  store        every SQL statement, both dialects (schema, inserts, reads, report sums)
  sqlite       the SQLite backend (WAL file, the embedded default)
  postgres     the PostgreSQL backend (psycopg 3; for replicas on several nodes)
  target       a --ledger value: file path or postgresql:// URL, named without passwords
  ledger       the writer thread with group commit, open_reader, the public API
Accounting (finished pods -> usage rows):
  settings     the accounting: policy section (market factors, Prometheus, settleAfter)
  emissions    energy and emissions of one run: pure arithmetic
  prometheus   measured energy from Kepler or DCGM counters
  accountant   the periodic pass that writes usage rows
  metrics      Prometheus counters of accounted pods and their emissions (avoided)
  provisional  pods awaiting accounting: how many, when they settle, estimates
Reports:
  report_options  validated options; report_frames  grouped tables and SCI;
  report_plot     the PNG chart; report  formats and the backlog;
  report_query    options from text, GET /report
"""
