from llama3med.cli.main import main

main()
