"""`events-app` with the public page cache switched off, for bench/pages.py's "uncached" figure:
every GET renders the page again (the key query, the event read, Markdown, the template).

    python bench/serve_uncached.py serve --no-worker --port 8000
"""

import sys

from events_app.cli import main
from events_app.web import cache

cache.ENABLED = False

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
