"""genaccel.blocks"""
