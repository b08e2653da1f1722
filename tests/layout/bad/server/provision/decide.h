/* (the header the hub should not see) */
