import HoptraceCLI
HoptraceCommand.main()
