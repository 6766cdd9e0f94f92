from gpuprep.cli import main

main()
