"""The command line: argv in, exit code out.

`main` maps every error to an exit code; `commands/` holds one thin module per subcommand
(parse its flags, call one action, render the result). Nothing here moves data itself.
"""
