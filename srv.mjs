import { FakeStorage } from './dist/test/helpers/fake-storage.js';
const st = await new FakeStorage().start();
st.buckets.set('b', { public: false });
console.log(st.url);
setInterval(() => {}, 1000);
