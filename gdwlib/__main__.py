"""``python -m gdwlib`` and the ``gdw`` command: :func:`gdwlib.cli.main`."""
import signal
import sys


def launch() -> int:
    # Ctrl-C while torch's libraries load can end the interpreter from C++ (std::terminate, no tidy
    # message): it is held back until cli.main, which lets it through and reports it in one line
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    from .cli import main

    return main()


if __name__ == "__main__":
    sys.exit(launch())
