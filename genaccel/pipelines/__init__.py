"""genaccel.pipelines"""
