import sys

try:
    from audit.cli import main
except KeyboardInterrupt:  # Ctrl-C while starting up: nothing has run, no traceback
    print("interrupted: no run folder was published and no ledger entry written; earlier run folders are untouched",
          file=sys.stderr)
    sys.exit(130)

main()
