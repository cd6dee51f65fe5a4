import { MemoryStore } from "../lib/store_memory.ts";
import { storeContract } from "./store_contract.ts";

storeContract("MemoryStore", () => {
  const store = new MemoryStore();
  return Promise.resolve({
    store,
    [Symbol.asyncDispose]: () => store.close(),
  });
});
