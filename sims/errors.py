"""The one error type for bad user input, so every command reports it the same way."""


class InputError(ValueError):
    """Bad input from the user: names the offending file (or option) and what is wrong with it.

    The CLI prints ``error: <source>: <problem>`` and exits with status 2.
    """

    def __init__(self, source, problem):
        self.source = str(source)
        self.problem = str(problem)
        super().__init__(f"{self.source}: {self.problem}")
