"""`python -m bot` is `archbot`."""

from bot.cli import main

if __name__ == "__main__":
    main()
