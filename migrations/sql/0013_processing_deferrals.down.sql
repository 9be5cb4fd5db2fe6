DROP TABLE processing_deferrals;
