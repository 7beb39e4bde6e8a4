async def test_seed_curl_example_returns_five_customers(server):
    status, body, _ = await server.post("/query", {"query": "SELECT * FROM customers LIMIT 5"},
                                        key=server.keys["analyst"])
    assert status == 200
    assert body["success"] is True
    assert len(body["data"]) == 5
    assert set(body["data"][0]) == {"id", "name", "email", "phone", "account_status", "last_purchase"}
