print("identbench")
